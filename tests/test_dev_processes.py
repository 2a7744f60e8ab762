"""Starting the development federation's processes: handed-over sockets, and waits that see a
child die (gateway.dev.processes, gateway.listeners)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import requests

from gateway.dev import federation
from gateway.dev.processes import (
    Child,
    Ports,
    identify,
    is_same_process,
    spawn,
    stop_processes,
    wait_for,
    wait_http,
)
from gateway.listeners import LISTEN_FDS_ENV, inherited_socket, listen_fds_value, listening_socket

REPO = Path(__file__).resolve().parents[1]


def test_a_reserved_port_stays_taken_until_the_child_has_it(tmp_path: Path) -> None:
    ports = Ports()
    port = ports.reserve()
    with socket.socket() as intruder, pytest.raises(OSError) as taken:
        intruder.bind(("127.0.0.1", port))
    assert taken.value.errno == errno.EADDRINUSE

    child = spawn(
        "benefits",
        [sys.executable, "-m", "services.benefits_api", "--port", str(port)],
        tmp_path / "benefits.log",
        cwd=REPO,
        listening=ports.take([port]),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/", time.monotonic() + 30, child)
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code < 500
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        child.process.wait(timeout=20)
        ports.close()
    # The parent kept no copy: once the child is gone, nothing accepts on the port.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_a_wait_fails_at_once_when_the_child_dies(tmp_path: Path) -> None:
    ports = Ports()
    port = ports.reserve()
    child = spawn(
        "doomed",
        [sys.executable, "-c", "import sys; print('cannot open the key file'); sys.exit(3)"],
        tmp_path / "doomed.log",
        cwd=tmp_path,
        listening=ports.take([port]),
    )
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failed:
        wait_http(f"http://127.0.0.1:{port}/health", started + 60, child)
    assert time.monotonic() - started < 15, "the wait ran on although the child was dead"
    assert "doomed exited with status 3" in str(failed.value)
    assert "cannot open the key file" in str(failed.value)

    with pytest.raises(RuntimeError, match="doomed exited with status 3"):
        wait_for(lambda: False, time.monotonic() + 60, "something", [child])


def test_a_wait_without_a_child_runs_to_its_deadline(closed_port_url: str) -> None:
    with pytest.raises(RuntimeError, match="did not come up in time"):
        wait_http(closed_port_url, time.monotonic() + 0.5)


def test_only_a_socket_bound_to_the_named_port_is_taken() -> None:
    with socket.create_server(("127.0.0.1", 0)) as held, socket.socket() as other:
        port = held.getsockname()[1]
        other.bind(("127.0.0.1", 0))
        environ = {LISTEN_FDS_ENV: listen_fds_value({f"127.0.0.1:{port}": held.fileno()})}
        found = inherited_socket("127.0.0.1", port, environ)
        assert found is not None and found.fileno() == held.fileno()
        found.detach()  # the same descriptor as `held`, which closes it

        assert inherited_socket("127.0.0.1", port + 1, environ) is None
        # A stale entry (a grandchild inherits the variable, not the sockets) is ignored.
        stale = {LISTEN_FDS_ENV: listen_fds_value({f"127.0.0.1:{port}": other.fileno()})}
        assert inherited_socket("127.0.0.1", port, stale) is None
        assert other.fileno() >= 0, "a descriptor that is not ours stays open"
        assert inherited_socket("127.0.0.1", port, {LISTEN_FDS_ENV: "garbage,=,x=y"}) is None


def test_without_a_handed_over_socket_the_server_binds_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LISTEN_FDS_ENV, raising=False)
    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.getsockname()[1] > 0


# --- stopping only what was started (issue 9, Build 13 / hole 10) ---------------------------------


def _sleeper(tmp_path: Path, name: str) -> Child:
    return spawn(
        name, [sys.executable, "-c", "import time; time.sleep(120)"], tmp_path / f"{name}.log", cwd=tmp_path
    )


def _reap(child: Child) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.process.wait(timeout=20)


def test_a_started_process_is_recognised_by_its_identity(tmp_path: Path) -> None:
    child = _sleeper(tmp_path, "sleeper")
    try:
        assert child.identity is not None and child.identity.pid == child.pid
        assert child.identity.cmdline == (sys.executable, "-c", "import time; time.sleep(120)")
        assert is_same_process(child.identity)
        assert identify(child.pid) == child.identity
    finally:
        _reap(child)
    assert identify(child.pid) is None
    assert not is_same_process(child.identity)


def test_down_does_not_signal_a_pid_that_now_names_another_process(tmp_path: Path) -> None:
    """The recorded PID of gw-a is now an unrelated process's (same command, started later, as
    a reused PID would be): `federation down` leaves it alone and stops what is still ours."""
    fed = tmp_path / "fed"
    fed.mkdir()
    gone = _sleeper(tmp_path, "gone")
    assert gone.identity is not None
    _reap(gone)
    time.sleep(0.1)  # a later start time, by several clock ticks
    stranger = _sleeper(tmp_path, "stranger")  # never recorded: not the federation's
    ours = _sleeper(tmp_path, "ours")
    assert ours.identity is not None
    reused = dataclasses.replace(gone.identity, pid=stranger.pid)  # what pids.json still says
    (fed / "pids.json").write_text(json.dumps({"gw-a": stranger.pid, "gw-b": ours.pid, "trust": 1}))
    (fed / federation.PROCESSES_FILE).write_text(
        json.dumps({"gw-a": reused.to_json(), "gw-b": ours.identity.to_json()})
    )
    try:
        left_alone = federation.down(fed)
        assert left_alone == ["gw-a", "trust"]  # trust: PID 1 has no record, so it is not ours
        ours.process.wait(timeout=20)  # down reaped it already, or it ends now: stopped either way
        assert not is_same_process(ours.identity)
        time.sleep(0.2)
        assert stranger.process.poll() is None, "a process that was never ours was signalled"
        assert not (fed / "pids.json").exists() and not (fed / federation.PROCESSES_FILE).exists()
    finally:
        _reap(stranger)
        _reap(ours)


def test_stop_processes_checks_again_before_each_signal(tmp_path: Path) -> None:
    child = _sleeper(tmp_path, "child")
    assert child.identity is not None
    other_boot = dataclasses.replace(child.identity, boot_id="another boot")
    other_command = dataclasses.replace(child.identity, cmdline=("something", "else"))
    try:
        assert stop_processes({"a": other_boot, "b": other_command}, grace_seconds=0.5) == ["a", "b"]
        assert child.process.poll() is None
        assert stop_processes({"child": child.identity}, grace_seconds=10) == []
        assert not is_same_process(child.identity)
    finally:
        _reap(child)
