"""Log verification as a background job: started by one call, watched by others, one at a time.

Verifying a million records takes a minute or more; an HTTP request that long times out in
proxies and clients, and a second one started beside it doubles the load. So the management API
starts a job (:meth:`VerificationJobs.start`, answering at once with its id) and the caller polls
it (:meth:`VerificationJobs.get`) for progress and, at the end, the result. A node runs one job at
a time: a start while one runs answers with the running job.

The job runs in a thread of its own, at a lower scheduling priority, with its own database
connection (the work is gateway.messagelog.inspector's), so the node's event loop keeps serving;
memory is bounded by the streaming verifier (gateway.messagelog.verify_db), and the few finished
jobs kept here hold only their summaries.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.messagelog.officer import problem_lines

log = logging.getLogger(__name__)

FINISHED_KEPT: Final = 8
"""Finished jobs whose result can still be read: enough for a few officers polling at once."""

MAX_PROBLEMS: Final = 100
"""Problems listed in a job's answer; `problem_count` counts them all."""

Work = Callable[[Callable[[int, int], None]], Mapping[str, Any]]
"""`work(progress) -> answer`: the verification, calling `progress(checked, total)` as it goes
(it raises JobStopped when the node shuts down); the answer is officer.verification_json's."""


class JobState(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"  # verification finished: the answer says whether the log is valid
    FAILED = "failed"  # verification could not run to its end (the error says why)


class JobStopped(Exception):
    """The node is shutting down: the job ends where it is."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class VerificationJob:
    """One verification's progress, and its answer once done. Written by its thread only."""

    id: str
    node: str | None
    full: bool
    started_at: dt.datetime = field(default_factory=_now)
    state: JobState = JobState.RUNNING
    checked: int = 0
    total: int = 0
    finished_at: dt.datetime | None = None
    answer: Mapping[str, Any] | None = None
    error: str | None = None
    _began: float = field(default_factory=time.monotonic)
    _ended: float | None = None

    def progress(self, checked: int, total: int) -> None:
        self.checked, self.total = checked, total

    def to_json(self) -> dict[str, Any]:
        """What the API answers: progress while running, the verification's answer when done."""
        seconds = (self._ended or time.monotonic()) - self._began
        problems = [] if self.answer is None else problem_lines(self.answer)
        return {
            "id": self.id,
            "state": self.state.value,
            "node": self.node,
            "full": self.full,
            "started_at": _time(self.started_at),
            "finished_at": None if self.finished_at is None else _time(self.finished_at),
            "records_verified": self.checked,
            "records_total": max(self.total, self.checked),
            "records_per_second": round(self.checked / seconds) if seconds > 0 else 0,
            "valid": None if self.answer is None else bool(self.answer["valid"]),
            "result": self.answer,
            "problems": problems[:MAX_PROBLEMS],
            "problem_count": len(problems),
            "error": self.error,
        }


def _time(value: dt.datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


class VerificationJobs:
    """A node's verification jobs: at most one running, the last FINISHED_KEPT kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, VerificationJob] = OrderedDict()
        self._running: VerificationJob | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self, work: Work, *, node: str | None, full: bool) -> tuple[VerificationJob, bool]:
        """A new job running `work`, and True; or the running job, and False."""
        with self._lock:
            if self._running is not None:
                return self._running, False
            job = VerificationJob(uuid.uuid4().hex, node, full)
            self._running = job
            self._jobs[job.id] = job
            while len(self._jobs) > FINISHED_KEPT + 1:
                self._jobs.popitem(last=False)
        thread = threading.Thread(
            target=self._run, args=(job, work), name=f"log-verify-{job.id[:8]}", daemon=True
        )
        self._thread = thread
        thread.start()
        return job, True

    def get(self, job_id: str) -> VerificationJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def stop(self, wait_seconds: float = 0.0) -> None:
        """Make a running job end at its next page (the node is shutting down), and wait up to
        `wait_seconds` for it, so the node closes its database only after the job let go of it."""
        self._stopping.set()
        thread = self._thread
        if wait_seconds > 0 and thread is not None:
            thread.join(wait_seconds)

    def _run(self, job: VerificationJob, work: Work) -> None:
        _lower_priority()

        def progress(checked: int, total: int) -> None:
            if self._stopping.is_set():
                raise JobStopped("the node is shutting down")
            job.progress(checked, total)

        try:
            job.answer = work(progress)
            job.state = JobState.DONE
        except Exception as exc:  # the job's answer says what went wrong; the node goes on
            if not isinstance(exc, JobStopped):
                log.exception("log verification job %s failed", job.id)
            job.error = f"{type(exc).__name__}: {exc}"
            job.state = JobState.FAILED
        finally:
            job.finished_at, job._ended = _now(), time.monotonic()
            with self._lock:
                self._running = None


JOB_NICENESS: Final = 10
"""How much lower than the node's own threads the job's thread is scheduled (Linux nice): when
the cores are busy, the event loop's thread gets the CPU (and then the GIL) first."""


def _lower_priority() -> None:
    """Lower this thread's scheduling priority where the OS allows it per thread (Linux)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not permitted: the job runs at normal priority
        log.debug("log verification job: could not lower its thread's priority")
