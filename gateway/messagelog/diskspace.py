"""Free disk space under the message log: watermarks, the alarm, and when the log cannot write.

A gateway that answers only what it logged stops when its log's disk is full, and a full disk is
the one outage an operator can see coming days ahead. So the free space of the filesystems the
log writes to (the log database's, when it is a local SQLite file, and the archive directory's)
is compared with two watermarks:

- **warning**: an alarm in the log (once per crossing, not per request) and a warning in the
  health payload, while traffic goes on; there is time to add disk, ship archives, shorten
  retention.
- **critical**: the log's own filesystem is so full that a commit may fail half-way (SQLite
  needs room for its WAL and checkpoints, a batch of large messages needs room for itself): new
  exchanges are refused with `LoggingFailed` before anything is sent, while exchanges already
  under way still log their remaining records into the space that is left. For the archive
  directory alone the critical watermark is an alarm (archiving will fail; records then stay
  in the database, unpurged), never a refusal: the log can still be written.

A watermark is crossed when free space falls below its percentage of the filesystem's size or
below its bytes, whichever comes first; 0 switches that half off. The free-space function is a
seam (`DiskWatch(usage=...)`): the node gives `shutil.disk_usage`, tests give a function that
reports a nearly full disk.
"""

from __future__ import annotations

import enum
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

log = logging.getLogger(__name__)

GIB: Final = 1024**3
MIB: Final = 1024**2

DEFAULT_WARNING_FREE_PERCENT: Final = 10.0
"""Warn when less than a tenth of the disk is free: on a disk sized for a month of log (docs/
resilience.md) that is days of traffic left, time enough to act."""
DEFAULT_WARNING_FREE_BYTES: Final = 2 * GIB
"""...or when less than 2 GiB is, whichever comes first: on a small disk a tenth is only hours
of a busy gateway's log (bytes per exchange: docs/resilience.md)."""
DEFAULT_CRITICAL_FREE_PERCENT: Final = 0.0
"""Refusal is tied to bytes the log really needs, not to a share of the disk."""
DEFAULT_CRITICAL_FREE_BYTES: Final = 256 * MIB
"""Below this the log refuses new exchanges: room for an exchange's records of the largest
message (4 x 10 MiB), a full SQLite WAL before its checkpoint (~4 MB) and an archive batch
(~10 MB), many times over, so that exchanges already under way, the heads and the archiver still
complete and the gateway recovers by itself once space is freed."""

DEFAULT_CHECK_SECONDS: Final = 1.0
"""How stale a free-space reading the request path may use: one statvfs a second at most, and
at 150 MB/min (a busy gateway) the critical margin outlasts a reading many times over."""


class DiskUsage(NamedTuple):
    """What `shutil.disk_usage` returns: the filesystem's size and its free bytes (for us)."""

    total: int
    used: int
    free: int


FreeSpace = Callable[[Path], DiskUsage]
"""The seam: free space of the filesystem holding a path."""


def system_disk_usage(path: Path) -> DiskUsage:
    """The real reading; `free` is what an unprivileged process may still write."""
    total, used, free = shutil.disk_usage(path)
    return DiskUsage(total, used, free)


class DiskLevel(enum.IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True)
class Watermark:
    """Crossed when free space is below `free_percent` of the filesystem or below `free_bytes`."""

    free_percent: float = 0.0
    free_bytes: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.free_percent < 100 or self.free_bytes < 0:
            raise ValueError("a watermark's free_percent is 0..100 and its free_bytes 0 or more")

    def crossed(self, usage: DiskUsage) -> bool:
        return usage.free < self.free_bytes or (
            usage.total > 0 and usage.free * 100 < self.free_percent * usage.total
        )


@dataclass(frozen=True)
class DiskWatermarks:
    warning: Watermark = Watermark(DEFAULT_WARNING_FREE_PERCENT, DEFAULT_WARNING_FREE_BYTES)
    critical: Watermark = Watermark(DEFAULT_CRITICAL_FREE_PERCENT, DEFAULT_CRITICAL_FREE_BYTES)

    def __post_init__(self) -> None:
        if (
            self.critical.free_percent > self.warning.free_percent
            or self.critical.free_bytes > self.warning.free_bytes
        ):
            raise ValueError("the critical watermark must lie below the warning watermark")

    def level(self, usage: DiskUsage) -> DiskLevel:
        if self.critical.crossed(usage):
            return DiskLevel.CRITICAL
        if self.warning.crossed(usage):
            return DiskLevel.WARNING
        return DiskLevel.OK


@dataclass(frozen=True)
class Volume:
    """One place the log writes to. `refuses`: crossing critical here means the log cannot write."""

    role: str  # "log" (the database's directory) or "archive"
    path: Path
    refuses: bool


@dataclass
class _Reading:
    usage: DiskUsage | None = None
    level: DiskLevel = DiskLevel.OK
    error: str | None = None


class DiskWatch:
    """The watermarks applied to the log's volumes, re-read at most every `max_age` seconds.

    `refusal()` is on the request path: it costs a clock read unless the reading is stale.
    Alarms are logged when a volume's level changes, so a disk hovering at a watermark logs
    once per crossing, not once per request.
    """

    def __init__(
        self,
        volumes: list[Volume],
        watermarks: DiskWatermarks = DiskWatermarks(),
        *,
        usage: FreeSpace = system_disk_usage,
        max_age: float = DEFAULT_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.volumes = volumes
        self.watermarks = watermarks
        self._usage = usage
        self._max_age = max_age
        self._clock = clock
        self._readings = {volume.role: _Reading() for volume in volumes}
        self._read_at: float | None = None

    def refresh(self, *, force: bool = False) -> None:
        """Read every volume again (if the last reading is stale, or `force`); log changes."""
        now = self._clock()
        if not force and self._read_at is not None and now - self._read_at < self._max_age:
            return
        self._read_at = now
        for volume in self.volumes:
            self._read(volume, self._readings[volume.role])

    def _read(self, volume: Volume, reading: _Reading) -> None:
        try:
            usage = self._usage(existing_parent(volume.path))
        except OSError as exc:  # the directory vanished or the filesystem went away: say so
            if reading.error != str(exc):
                log.error("free space of the %s volume %s cannot be read: %s", volume.role, volume.path, exc)
            reading.error, reading.usage = str(exc), None
            return
        reading.error, reading.usage = None, usage
        level = self.watermarks.level(usage)
        if level != reading.level:
            self._alarm(volume, level, reading.level, usage)
        reading.level = level

    def _alarm(self, volume: Volume, level: DiskLevel, before: DiskLevel, usage: DiskUsage) -> None:
        free = f"{size_text(usage.free)} free of {size_text(usage.total)}"
        if level == DiskLevel.OK:
            log.warning("disk alarm cleared: the %s volume %s has %s", volume.role, volume.path, free)
        elif level == DiskLevel.WARNING and before == DiskLevel.OK:
            log.warning("DISK ALARM (warning): the %s volume %s has only %s", volume.role, volume.path, free)
        elif level == DiskLevel.WARNING:
            log.warning("disk back above critical: the %s volume %s has %s", volume.role, volume.path, free)
        else:
            consequence = "new exchanges are refused" if volume.refuses else "archiving may fail"
            log.error(
                "DISK ALARM (critical): the %s volume %s has only %s; %s",
                volume.role,
                volume.path,
                free,
                consequence,
            )

    def refusal(self) -> str | None:
        """Why the log cannot take a new exchange now, or None (the request path's check)."""
        self.refresh()
        for volume in self.volumes:
            reading = self._readings[volume.role]
            if volume.refuses and reading.level == DiskLevel.CRITICAL and reading.usage is not None:
                return (
                    f"the message log's disk is full: {size_text(reading.usage.free)} free at {volume.path}, "
                    f"below the critical watermark"
                )
        return None

    def warnings(self) -> list[str]:
        found = []
        for volume in self.volumes:
            reading = self._readings[volume.role]
            if reading.error is not None:
                found.append(f"{volume.role} volume {volume.path}: free space unreadable: {reading.error}")
            elif reading.level != DiskLevel.OK and reading.usage is not None:
                found.append(
                    f"{volume.role} volume {volume.path}: {size_text(reading.usage.free)} free "
                    f"of {size_text(reading.usage.total)}, below the {reading.level.name.lower()} watermark"
                )
        return found

    def health(self) -> dict[str, object]:
        """The `messagelog.disk` part of the health payload."""
        self.refresh()
        return {
            "volumes": {
                volume.role: {
                    "path": str(volume.path),
                    "free_bytes": reading.usage.free if reading.usage else None,
                    "total_bytes": reading.usage.total if reading.usage else None,
                    "level": reading.level.name.lower(),
                    "refuses_when_critical": volume.refuses,
                }
                for volume in self.volumes
                for reading in (self._readings[volume.role],)
            },
            "refusing": self.refusal() is not None,
            "warnings": self.warnings(),
        }


def existing_parent(path: Path) -> Path:
    """The path, or its nearest existing parent: a directory not made yet lives on that filesystem."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


def size_text(count: int) -> str:
    """Bytes as people read them in an alarm or a report: 3.2 GiB, 512.0 MiB, 900 bytes."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
