"""The node's environment, as X-Road's environmental monitoring reports it (docs/logging.md
"The node's environment"): the machine, the process, the disks the node writes to, the
versions it runs and its certificates' expiry.

What an operator checks before blaming the network: is the disk full, is memory short, is the
machine loaded, has a certificate expired or is it about to, is this node on the version the
others run. `collect` reads it all in one pass (a few /proc reads and statvfs calls, about a
millisecond; the versions once per process) from the standard library only, on Linux from
/proc; where a reading is not available (another OS) its field is None. The management API
runs it in a worker thread.

The sources (which directories, which certificates, the OCSP status the node holds) come from
the node (`NodeSurroundings`); nothing here opens a socket or a database.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import importlib.metadata
import os
import platform
import re
import resource
import sqlite3
import ssl
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography import x509

from gateway.crypto.certs import fingerprint_sha256, serial_hex
from gateway.globalconf.signed import format_time
from gateway.messagelog.diskspace import FreeSpace, existing_parent, system_disk_usage

DISTRIBUTION: Final = "xgate"
"""The package whose version and pinned dependencies are reported."""

SECONDS_PER_DAY: Final = 86400

_PROC: Final = Path("/proc")
_REQUIREMENT_NAME: Final = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class NodeCertificate:
    """A certificate the node uses: `role` is "auth" (TLS toward peers), "signing" (a hosted
    member's) or "internal_tls" (the internal HTTPS listener's)."""

    role: str
    certificate: x509.Certificate
    member: str | None = None


OcspStatus = Callable[[], Mapping[str, Mapping[str, Any]]]
"""The OCSP view the node holds of its own certificates, by serial (lower-case hex): at least
`status` ("good", "revoked since ...", None before the first response) and `required`."""


@dataclass(frozen=True)
class NodeSurroundings:
    """What only the node knows: when it started, where it writes, what it is."""

    started_at: float
    """Unix seconds: when the node process began serving."""
    directories: Mapping[str, Path]
    """Role -> directory: data, serverconf database, message log database, archive, cache."""
    certificates: Sequence[NodeCertificate] = ()
    ocsp: OcspStatus | None = None


# --- the machine and the process --------------------------------------------------------------


def _proc_fields(path: Path) -> dict[str, str]:
    """`Key: value` lines (/proc/meminfo, /proc/self/status); empty where there is no /proc."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        found[key.strip()] = value.strip()
    return found


def _kib(value: str | None) -> int | None:
    """'1234 kB' as bytes."""
    if not value:
        return None
    number = value.split()[0]
    return int(number) * 1024 if number.isdigit() else None


def _first_float(path: Path) -> float | None:
    try:
        return float(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def system() -> dict[str, Any]:
    """The operating system, the machine's load and memory, and how long it has been up."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    meminfo = _proc_fields(_PROC / "meminfo")
    total = _kib(meminfo.get("MemTotal"))
    if total is None and hasattr(os, "sysconf"):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            total = None
    try:
        distribution = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        distribution = None
    return {
        "os": platform.system(),
        "os_release": platform.release(),
        "distribution": distribution,
        "machine": platform.machine(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "load_average": load,
        "memory_total_bytes": total,
        "memory_available_bytes": _kib(meminfo.get("MemAvailable")),
        "swap_total_bytes": _kib(meminfo.get("SwapTotal")),
        "swap_free_bytes": _kib(meminfo.get("SwapFree")),
        "uptime_seconds": _first_float(_PROC / "uptime"),
    }


def _open_files() -> int | None:
    try:
        return len(os.listdir(_PROC / "self" / "fd"))
    except OSError:
        return None


def process(started_at: float, now: float) -> dict[str, Any]:
    """This node process: its memory, CPU time, threads, open files against their limit, uptime."""
    status = _proc_fields(_PROC / "self" / "status")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    times = os.times()
    rss = _kib(status.get("VmRSS"))
    if rss is None:  # not Linux: the peak is what getrusage offers (KiB on Linux, bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss = peak if sys.platform == "darwin" else peak * 1024
    threads = status.get("Threads")
    return {
        "pid": os.getpid(),
        "uptime_seconds": round(max(0.0, now - started_at), 3),
        "started_at": format_time(dt.datetime.fromtimestamp(started_at, dt.UTC)),
        "memory_rss_bytes": rss,
        "memory_peak_rss_bytes": _kib(status.get("VmHWM")),
        "cpu_user_seconds": round(times.user, 3),
        "cpu_system_seconds": round(times.system, 3),
        "threads": int(threads) if threads and threads.isdigit() else None,
        "open_files": _open_files(),
        "open_files_limit": None if soft == resource.RLIM_INFINITY else soft,
        "open_files_hard_limit": None if hard == resource.RLIM_INFINITY else hard,
    }


# --- disks ------------------------------------------------------------------------------------


def disks(directories: Mapping[str, Path], usage: FreeSpace = system_disk_usage) -> list[dict[str, Any]]:
    """Free space of each directory's filesystem; `free` is what the node (unprivileged) may write."""
    found = []
    for role, directory in directories.items():
        entry: dict[str, Any] = {"role": role, "path": str(directory)}
        try:
            reading = usage(existing_parent(directory))
        except OSError as exc:
            unread = dict.fromkeys(("total_bytes", "used_bytes", "free_bytes", "free_percent"))
            entry.update(unread, error=str(exc))
        else:
            percent = round(100.0 * reading.free / reading.total, 2) if reading.total else None
            entry.update(
                total_bytes=reading.total,
                used_bytes=reading.used,
                free_bytes=reading.free,
                free_percent=percent,
                error=None,
            )
        found.append(entry)
    return found


# --- versions ---------------------------------------------------------------------------------


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def dependency_names(requirements: Iterable[str]) -> list[str]:
    """The distributions a package's requirements name, without its optional extras."""
    names = []
    for requirement in requirements:
        _, _, marker = requirement.partition(";")
        if "extra" in marker:
            continue
        match = _REQUIREMENT_NAME.match(requirement)
        if match and match.group(1) not in names:
            names.append(match.group(1))
    return names


@functools.cache
def versions() -> dict[str, Any]:
    """xgate's version, Python's, OpenSSL's and SQLite's, and each dependency's as installed.

    Read once per process (~40 ms of package metadata): the code running is what was loaded
    at start, whatever an upgrade put on disk since."""
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    return {
        "xgate": _installed(DISTRIBUTION),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "openssl": ssl.OPENSSL_VERSION,
        "sqlite": sqlite3.sqlite_version,
        "dependencies": {name: _installed(name) for name in sorted(dependency_names(requirements))},
    }


# --- certificates -----------------------------------------------------------------------------


def certificate_entry(
    entry: NodeCertificate, now: dt.datetime, ocsp: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """A certificate's identity and expiry: `days_left` counts whole days to not_after (negative
    once expired), what an expiry alarm compares with its threshold."""
    certificate = entry.certificate
    not_after = certificate.not_valid_after_utc
    left = (not_after - now).total_seconds()
    serial = serial_hex(certificate)
    status = ocsp.get(serial)
    return {
        "role": entry.role,
        "member": entry.member,
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": serial,
        "sha256": fingerprint_sha256(certificate),
        "not_before": format_time(certificate.not_valid_before_utc),
        "not_after": format_time(not_after),
        "days_left": int(left // SECONDS_PER_DAY),
        "expired": left <= 0,
        "ocsp_status": None if status is None else status.get("status"),
        "ocsp_required": None if status is None else bool(status.get("required")),
    }


def certificates(
    entries: Sequence[NodeCertificate], now: dt.datetime, ocsp: OcspStatus | None = None
) -> list[dict[str, Any]]:
    known = ocsp() if ocsp is not None else {}
    return [certificate_entry(entry, now, known) for entry in entries]


# --- the whole report -------------------------------------------------------------------------


@dataclass
class EnvironmentCollector:
    """Reads the environment report of one node; `clock` and `usage` are the tests' seams."""

    surroundings: NodeSurroundings
    clock: Callable[[], float] = time.time
    usage: FreeSpace = field(default=system_disk_usage)

    def collect(self) -> dict[str, Any]:
        now = self.clock()
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        sources = self.surroundings
        return {
            "time": format_time(at),
            "system": system(),
            "process": process(sources.started_at, now),
            "disks": disks(sources.directories, self.usage),
            "versions": copy.deepcopy(versions()),
            "certificates": certificates(sources.certificates, at, sources.ocsp),
        }
