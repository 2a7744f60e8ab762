"""Times typed on the command line (gateway.timetext): absolute, relative, and refused."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.timetext import TimeTextError, parse_duration, parse_when

NOW = dt.datetime(2026, 12, 6, 14, 30, 15, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T10:00:00Z", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)),
        ("2026-11-27T10:00:00", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)),  # no zone: UTC
        ("2026-11-27", dt.datetime(2026, 11, 27, tzinfo=dt.UTC)),
        ("2026-11-27T12:00:00+02:00", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)),
        ("now", NOW),
        ("today", dt.datetime(2026, 12, 6, tzinfo=dt.UTC)),
        (" Yesterday ", dt.datetime(2026, 12, 5, tzinfo=dt.UTC)),
        ("90s", NOW - dt.timedelta(seconds=90)),
        ("15m", NOW - dt.timedelta(minutes=15)),
        ("2h", NOW - dt.timedelta(hours=2)),
        ("2h ago", NOW - dt.timedelta(hours=2)),
        ("7d", NOW - dt.timedelta(days=7)),
        ("1w", NOW - dt.timedelta(weeks=1)),
    ],
)
def test_times_people_type(text: str, expected: dt.datetime) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "last tuesday", "2x", "-2h", "2026-13-01", "h2"])
def test_anything_else_is_refused_with_examples(text: str) -> None:
    with pytest.raises(TimeTextError, match="yesterday"):
        parse_when(text, NOW)


def test_a_duration_is_read_as_the_relative_times_are() -> None:
    assert parse_duration("90s") == 90.0 and parse_duration(" 15M ") == 900.0
    assert parse_duration("1h") == 3600.0 and parse_duration("1w") == 7 * 86400.0
    for text in ("0s", "2h ago", "soon", "-1h", "1.5h"):
        with pytest.raises(TimeTextError, match="duration"):
            parse_duration(text)
