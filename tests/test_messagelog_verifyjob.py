"""Background verification jobs: one at a time per node, progress while running, the answer when done."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from gateway.messagelog.verifyjob import MAX_PROBLEMS, JobState, VerificationJob, VerificationJobs

VALID: Mapping[str, Any] = {"valid": True, "chains": [], "problems": []}


def wait_until_done(jobs: VerificationJobs, job_id: str) -> VerificationJob:
    for _ in range(500):
        job = jobs.get(job_id)
        assert job is not None
        if job.state is not JobState.RUNNING:
            return job
        time.sleep(0.01)
    raise AssertionError("the job did not finish")


def test_one_job_at_a_time_with_progress_then_its_answer() -> None:
    jobs = VerificationJobs()
    may_finish, halfway = threading.Event(), threading.Event()

    def work(progress: Callable[[int, int], None]) -> Mapping[str, Any]:
        progress(500, 1000)
        halfway.set()
        assert may_finish.wait(5)
        progress(1000, 1000)
        return VALID

    job, started = jobs.start(work, node="node-1", full=True)
    assert started and halfway.wait(5)
    running = job.to_json()
    assert (running["state"], running["records_verified"], running["records_total"]) == ("running", 500, 1000)
    assert running["valid"] is None and running["result"] is None and running["finished_at"] is None
    again, started_again = jobs.start(work, node=None, full=False)
    assert again is job and not started_again  # a second start answers with the running job
    may_finish.set()
    done = wait_until_done(jobs, job.id).to_json()
    assert (done["state"], done["valid"], done["records_verified"]) == ("done", True, 1000)
    assert done["result"] == VALID and done["problems"] == [] and done["finished_at"] is not None
    following, started = jobs.start(lambda _progress: VALID, node=None, full=False)
    assert started and following.id != job.id
    assert jobs.get(job.id) is job  # finished jobs stay readable


def test_a_failed_verification_and_its_problems_are_the_jobs_answer() -> None:
    jobs = VerificationJobs()
    chains = [
        {
            "gateway": "DEV/GOV/1001/ss1",
            "node": f"n{i}",
            "first_bad": {"seq": 3, "problem": "modified", "reason": "r"},
        }
        for i in range(MAX_PROBLEMS + 5)
    ]
    answer = {"valid": False, "chains": chains, "problems": ["a head does not verify"]}
    job, _ = jobs.start(lambda _progress: answer, node=None, full=False)
    shown = wait_until_done(jobs, job.id).to_json()
    assert shown["valid"] is False and shown["problem_count"] == MAX_PROBLEMS + 6
    assert len(shown["problems"]) == MAX_PROBLEMS
    assert shown["problems"][0] == "DEV/GOV/1001/ss1 node n0, record 3: modified: r"

    def broken(_progress: Callable[[int, int], None]) -> Mapping[str, Any]:
        raise RuntimeError("the database went away")

    job, _ = jobs.start(broken, node=None, full=False)
    failed = wait_until_done(jobs, job.id).to_json()
    assert (failed["state"], failed["valid"]) == ("failed", None)
    assert failed["error"] == "RuntimeError: the database went away"


def test_stopping_ends_a_running_job_at_its_next_page() -> None:
    jobs = VerificationJobs()
    pages = threading.Event()

    def endless(progress: Callable[[int, int], None]) -> Mapping[str, Any]:
        checked = 0
        while True:
            checked += 100
            progress(checked, 10**9)
            pages.set()
            time.sleep(0.005)

    job, _ = jobs.start(endless, node=None, full=False)
    assert pages.wait(5)
    jobs.stop(wait_seconds=5)
    stopped = jobs.get(job.id)  # stop waited for the job's thread: it has ended
    assert stopped is not None and stopped.state is JobState.FAILED
    assert stopped.error is not None and "shutting down" in stopped.error


@pytest.mark.parametrize("kept", [1, 3])
def test_only_the_last_few_jobs_are_kept(kept: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.messagelog.verifyjob.FINISHED_KEPT", kept)
    jobs = VerificationJobs()
    ids = []
    for _ in range(kept + 3):
        job, _ = jobs.start(lambda _progress: VALID, node=None, full=False)
        wait_until_done(jobs, job.id)
        ids.append(job.id)
    assert [jobs.get(i) is not None for i in ids] == [False] * 2 + [True] * (kept + 1)
