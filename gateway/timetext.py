"""Times as people type them on the command line: ISO 8601, or relative (`2h`, `yesterday`).

Sans-IO: the caller passes `now`, so a query means the same whether it is parsed on the
officer's machine or by the gateway, and tests need no clock.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE: Final = re.compile(r"(\d+)\s*([smhdw])(?:\s+ago)?")
EXAMPLES: Final = (
    "2026-11-27T10:00:00Z, 2026-11-27 (UTC when no zone), 30m, 2h, 7d, 1w, today, yesterday, now"
)


class TimeTextError(ValueError):
    """The text is no time this module reads; the message lists what it reads."""


def parse_when(text: str, now: dt.datetime) -> dt.datetime:
    """An aware datetime for `text`: an ISO 8601 time (UTC when it names no zone), `now`,
    `today`/`yesterday` (midnight UTC), or a duration before `now` (`90s`, `15m`, `2h`, `7d`, `1w`,
    optionally followed by `ago`). Case and surrounding spaces do not matter."""
    cleaned = text.strip().lower()
    midnight = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    named = {"now": now, "today": midnight, "yesterday": midnight - dt.timedelta(days=1)}
    if cleaned in named:
        return named[cleaned]
    relative = _RELATIVE.fullmatch(cleaned)
    if relative is not None:
        return now - dt.timedelta(seconds=int(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimeTextError(f"{text!r} is not a time; write e.g. {EXAMPLES}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def parse_duration(text: str) -> float:
    """Seconds for a duration written as the relative times are (`90s`, `15m`, `2h`, `7d`, `1w`)."""
    found = _RELATIVE.fullmatch(text.strip().lower())
    if found is None or found.group(0).endswith("ago"):
        raise TimeTextError(f"{text!r} is not a duration; write e.g. 90s, 15m, 2h, 7d, 1w")
    seconds = int(found.group(1)) * _UNITS[found.group(2)]
    if seconds <= 0:
        raise TimeTextError(f"{text!r} is not a duration longer than zero")
    return float(seconds)
