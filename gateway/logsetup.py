"""How xgate's servers log: text or one JSON object per line, levels per component, off the event loop.

Every server entry point (`xgate gateway serve`, `xgate central serve`, `xgate trust serve`)
calls :func:`setup_logging` once, with the `[logging]` table of its file when it has one;
``XGATE_LOG_LEVEL`` and ``XGATE_LOG_FORMAT`` override the file (a container's environment wins
over the image's file). Lines go to standard error, where systemd's journal, Docker or a
supervisor collect them.

Records are handed to a queue on the caller's thread and written by one thread of their own:
a gateway logs on its event loop (the access log, a line per exchange), and a slow reader of
standard error must not stall message traffic. The queue is bounded; when it is full lines are
dropped and counted, and the writer says how many once it catches up.

The JSON format (docs/logging.md): ``time`` (RFC 3339, UTC, milliseconds), ``level``,
``logger``, ``message``, then every field the call passed with ``extra=``, and a failure's
traceback as one ``traceback`` field, never as lines of its own. A client's malformed HTTP
request is its mistake: one INFO line without a traceback (`ClientErrorsAtInfo`).
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TextIO

from aiohttp.http_exceptions import HttpProcessingError

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

FORMATS: Final[tuple[str, ...]] = ("text", "json")
LEVELS: Final[tuple[str, ...]] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

LEVEL_ENV: Final = "XGATE_LOG_LEVEL"
FORMAT_ENV: Final = "XGATE_LOG_FORMAT"

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The text line xgate has always written."""

MAX_QUEUED_RECORDS: Final = 100_000
"""Lines waiting for standard error before new ones are dropped: at a few hundred bytes each a
few tens of MB, minutes of a busy gateway's access log while its reader is stuck."""

# What every LogRecord carries; anything else on a record came from `extra=` and is a field.
_STANDARD_ATTRIBUTES: Final = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
        "taskName",
    }
)


class LogSetupError(ValueError):
    """A level or format that is not one of the known ones (from the environment)."""


@dataclass(frozen=True)
class LogSettings:
    """What a server's `[logging]` table says (docs/logging.md)."""

    format: LogFormat = "text"
    level: LogLevel = "INFO"
    levels: Mapping[str, LogLevel] = field(default_factory=dict)
    """Per logger (and the loggers beneath it): `{"gateway.proxy" = "DEBUG"}`."""
    access_log: bool = True
    """A line per exchange on logger `xgate.access` (gateway.monitoring.accesslog)."""

    def with_environment(self, environ: Mapping[str, str] = os.environ) -> LogSettings:
        """These settings with XGATE_LOG_LEVEL and XGATE_LOG_FORMAT applied over them."""
        level = environ.get(LEVEL_ENV, "").strip().upper() or self.level
        format_ = environ.get(FORMAT_ENV, "").strip().lower() or self.format
        if level not in LEVELS:
            raise LogSetupError(f"{LEVEL_ENV}={level!r}: not one of {', '.join(LEVELS)}")
        if format_ not in FORMATS:
            raise LogSetupError(f"{FORMAT_ENV}={format_!r}: not one of {', '.join(FORMATS)}")
        return LogSettings(format_, level, self.levels, self.access_log)  # type: ignore[arg-type]


def _utc(created: float) -> str:
    at = dt.datetime.fromtimestamp(created, dt.UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped by JSON)."""

    def __init__(self, worker: str | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            entry["worker"] = self.worker
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["traceback"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str, separators=(",", ":"))


SERVER_LOGGER: Final = "aiohttp.server"
"""Where aiohttp reports a request it could not read or serve."""


class ClientErrorsAtInfo(logging.Filter):
    """A request too malformed for aiohttp to read (a bad request line or header, a body
    that breaks its encoding) is the client's mistake, not the server's: aiohttp logs it at
    ERROR with a traceback; this makes it one INFO line without. The parser's message is left
    out: it quotes the raw request, headers and all (an API key among them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError) or not 400 <= (error.code or 400) < 500:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.INFO):
            return False
        record.msg = f"{record.getMessage()}: {type(error).__name__} ({error.code or 400})"
        record.args = None
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def formatter(format_: LogFormat, worker: str | None = None) -> logging.Formatter:
    """The settings' format; a worker of a node of several (gateway.workers) names itself in each line."""
    if format_ == "json":
        return JsonFormatter(worker)
    return logging.Formatter(
        TEXT_FORMAT if worker is None else TEXT_FORMAT.replace("%(name)s", f"{worker} %(name)s")
    )


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread, message and traceback already rendered (the record's
    arguments may change or die once the call returns); drops and counts when the queue is full."""

    def __init__(self, records: queue.Queue[Any]) -> None:
        super().__init__(records)
        self.dropped = 0
        self._lock_dropped = threading.Lock()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # In place, not on a copy as the standard QueueHandler does: this is the one handler
        # (on the root logger), and a copy costs as much as the record (~5 µs an access line).
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            rendered = record.exc_text or "".join(traceback.format_exception(*record.exc_info))
            record.exc_text = rendered.rstrip()
            record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock_dropped:
                self.dropped += 1

    def take_dropped(self) -> int:
        with self._lock_dropped:
            dropped, self.dropped = self.dropped, 0
        return dropped


class _ReportingListener(logging.handlers.QueueListener):
    """The writer thread; it reports lines dropped while the queue was full."""

    def __init__(self, records: queue.Queue[Any], handler: logging.Handler, source: _DroppingQueueHandler):
        super().__init__(records, handler, respect_handler_level=False)
        self._source = source

    def handle(self, record: logging.LogRecord) -> None:
        dropped = self._source.take_dropped()
        if dropped:
            note = logging.makeLogRecord(
                {
                    "name": __name__,
                    "levelno": logging.WARNING,
                    "levelname": "WARNING",
                    "msg": f"{dropped} log lines were dropped: standard error was not read fast enough",
                    "dropped_lines": dropped,
                }
            )
            super().handle(note)
        super().handle(record)


@dataclass
class Logging:
    """The logging a server set up; `close()` writes what is queued and stops the writer."""

    settings: LogSettings
    _listener: logging.handlers.QueueListener | None
    _handler: logging.Handler

    def close(self) -> None:
        global _active
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        logging.getLogger().removeHandler(self._handler)
        if _active is self:
            _active = None


_active: Logging | None = None


def active_format() -> LogFormat | None:
    """The format the process logs in, once `setup_logging` ran (None before, or after close)."""
    return _active.settings.format if _active is not None else None


def setup_logging(
    settings: LogSettings = LogSettings(),
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] = os.environ,
    worker: str | None = None,
) -> Logging:
    """Route every logger through one queue to `stream` (standard error) in the settings' format.

    Replaces handlers a previous call (or logging.basicConfig) left on the root logger, so a
    process has one writer. Raises LogSetupError for a bad XGATE_LOG_* value.
    """
    settings = settings.with_environment(environ)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, logging.handlers.QueueHandler):
            old.close()
    writer = logging.StreamHandler(stream if stream is not None else sys.stderr)
    writer.setFormatter(formatter(settings.format, worker))
    records: queue.Queue[Any] = queue.Queue(MAX_QUEUED_RECORDS)
    handler = _DroppingQueueHandler(records)
    listener = _ReportingListener(records, writer, handler)
    root.addHandler(handler)
    root.setLevel(settings.level)
    for name, level in settings.levels.items():
        logging.getLogger(name).setLevel(level)
    server = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(old, ClientErrorsAtInfo) for old in server.filters):
        server.addFilter(ClientErrorsAtInfo())
    listener.start()
    running = Logging(settings, listener, handler)
    global _active
    if _active is not None:
        _active.close()
    _active = running
    atexit.register(running.close)
    logging.captureWarnings(True)
    return running
