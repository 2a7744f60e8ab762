"""When a replication plan runs: every N seconds, or a cron-like five-field expression (sans-IO).

A :class:`Schedule` is a value in a cache policy; :meth:`Schedule.next_after` answers "when
next, after this moment" so the scheduler (an edge) needs no calendar arithmetic of its own.

Cron expressions follow the five fields of POSIX crontab (IEEE Std 1003.1, "crontab"):
minute, hour, day of month, month, day of week (0 or 7 = Sunday), each `*`, a number, a
range `a-b`, a list `a,b,c`, and steps `*/n` or `a-b/n` (the Vixie cron extension every
modern cron has). Names (`MON`, `JAN`) and the `@daily` shorthands are not accepted: one
spelling keeps policies comparable. When both day fields are restricted a day matches if
either does (POSIX: "the command shall be executed when either field matches"). Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

MIN_INTERVAL_SECONDS: Final = 10.0
"""Replication goes through the full signed path to a partner's service: more often than every
ten seconds is a load test, not a cache, and a typo (`1` for `1h`) must not become one."""

MAX_INTERVAL_SECONDS: Final = 366 * 24 * 3600.0
"""A year and a day: a plan run less often than yearly has outlived its data."""

MAX_CRON_SEARCH_DAYS: Final = 5 * 366
"""`0 0 31 2 *` (31 February) never matches; the search for a next run gives up after this
many days (a leap day, 29 February with a weekday, recurs within 28 years, but both day
fields restricted make it match either: five years covers every expression that can match)."""

_FIELDS: Final = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


class ScheduleError(ValueError):
    """An interval or cron expression that cannot be a schedule; the message says why."""


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"empty item in the {name} field {text!r}")
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"step {step_text!r} in the {name} field must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            if not first.isdigit() or not last.isdigit():
                raise ScheduleError(f"range {base!r} in the {name} field must be two numbers")
            start, end = int(first), int(last)
            if start > end:
                raise ScheduleError(f"range {base!r} in the {name} field runs backwards")
        elif base.isdigit():
            start = end = int(base)
            if step_text:
                end = high  # `5/15`: from 5, every 15 (Vixie cron)
        else:
            raise ScheduleError(f"{base!r} in the {name} field is not a number, range or '*'")
        if start < low or end > high:
            raise ScheduleError(f"{item!r} in the {name} field is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed five-field cron expression; `text` is what the administrator wrote."""

    text: str
    minutes: frozenset[int] = field(repr=False, compare=False)
    hours: frozenset[int] = field(repr=False, compare=False)
    days: frozenset[int] = field(repr=False, compare=False)
    months: frozenset[int] = field(repr=False, compare=False)
    weekdays: frozenset[int] = field(repr=False, compare=False)  # 0 = Sunday
    days_restricted: bool = field(repr=False, compare=False)
    weekdays_restricted: bool = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        parts = text.split()
        if len(parts) != len(_FIELDS):
            raise ScheduleError(
                "a cron expression has five fields (minute hour day month weekday),"
                f" not {len(parts)}: {text!r}"
            )
        minutes, hours, days, months, weekdays = (
            _parse_field(part, name, low, high)
            for part, (name, low, high) in zip(parts, _FIELDS, strict=True)
        )
        weekdays = frozenset(day % 7 for day in weekdays)
        return cls(
            " ".join(parts),
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted=parts[2] != "*",
            weekdays_restricted=parts[4] != "*",
        )

    def _day_matches(self, moment: datetime) -> bool:
        if moment.month not in self.months:
            return False
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def next_after(self, moment: datetime) -> datetime | None:
        """The first whole minute strictly after `moment` (UTC) the expression names, or None."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for offset in range(MAX_CRON_SEARCH_DAYS):
            candidate_day = day + timedelta(days=offset)
            if not self._day_matches(candidate_day):
                continue
            for hour in sorted(self.hours):
                for minute in sorted(self.minutes):
                    candidate = candidate_day.replace(hour=hour, minute=minute)
                    if candidate >= start:
                        return candidate
        return None


@dataclass(frozen=True, slots=True)
class Schedule:
    """Every `interval_seconds`, or at the times `cron` names: exactly one of them."""

    interval_seconds: float | None = None
    cron: CronExpression | None = None

    def __post_init__(self) -> None:
        if (self.interval_seconds is None) == (self.cron is None):
            raise ScheduleError("a schedule is either an interval in seconds or a cron expression")
        if self.interval_seconds is not None and not (
            MIN_INTERVAL_SECONDS <= self.interval_seconds <= MAX_INTERVAL_SECONDS
        ):
            raise ScheduleError(
                f"interval {self.interval_seconds:g} s is outside"
                f" {MIN_INTERVAL_SECONDS:g}-{MAX_INTERVAL_SECONDS:g} s"
            )

    @classmethod
    def every(cls, seconds: float) -> Schedule:
        return cls(interval_seconds=float(seconds))

    @classmethod
    def at(cls, cron: str) -> Schedule:
        return cls(cron=CronExpression.parse(cron))

    def next_after(self, moment: datetime) -> datetime | None:
        """When the plan runs next if it last ran (or was set) at `moment`; None if never."""
        if self.interval_seconds is not None:
            return moment + timedelta(seconds=self.interval_seconds)
        assert self.cron is not None
        return self.cron.next_after(moment)

    def to_document(self) -> dict[str, object]:
        if self.interval_seconds is not None:
            return {"interval_seconds": self.interval_seconds}
        assert self.cron is not None
        return {"cron": self.cron.text}

    @classmethod
    def from_document(cls, document: dict[str, object]) -> Schedule:
        interval = document.get("interval_seconds")
        cron = document.get("cron")
        if set(document) - {"interval_seconds", "cron"}:
            raise ScheduleError(
                f"unknown schedule fields: {sorted(set(document) - {'interval_seconds', 'cron'})}"
            )
        if interval is not None and cron is not None:
            raise ScheduleError("a schedule is either an interval in seconds or a cron expression, not both")
        if interval is not None:
            if not isinstance(interval, int | float) or isinstance(interval, bool):
                raise ScheduleError("interval_seconds must be a number")
            return cls.every(interval)
        if not isinstance(cron, str):
            raise ScheduleError("a schedule needs interval_seconds or cron")
        return cls.at(cron)
