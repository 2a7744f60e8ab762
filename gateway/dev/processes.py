"""The development federation's processes: ports held until a child serves them, start-up waits
that notice a dead child at once, and stopping.

Ports: the parent binds each listening socket on 127.0.0.1 port 0 (:class:`Ports`), writes the
port the system gave into the child's configuration, and hands the socket itself to the child
(`gateway.listeners`). No other process can take the port in between, as it could when a free
port was looked up, closed, and bound again by the child.

Waits: every wait for a child to answer also watches the child; when it exits first the wait
fails at once, quoting the end of the child's log, instead of running to its deadline.

Stopping: a PID written to a file outlives the process; once it exits the system may give the
number to any other process. Each child's identity is recorded when it starts
(:class:`ProcessIdentity`: boot, start time, command line, from proc(5)), and a process is
signalled only while the PID still names that same process (:func:`stop_processes`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests

from gateway.listeners import LISTEN_FDS_ENV, listen_fds_value

HOST: Final = "127.0.0.1"
POLL_SECONDS: Final = 0.1
LOG_LINES_SHOWN: Final = 20
"""How much of a dead child's log a failed wait quotes: enough for a traceback's end."""

PROC: Final = Path("/proc")
BOOT_ID: Final = PROC / "sys" / "kernel" / "random" / "boot_id"
"""Changes at every boot: a start time recorded before a reboot names no process after it."""
STAT_START_TIME_FIELD: Final = 22
"""proc(5), /proc/PID/stat: (22) starttime, the time the process started after boot, in clock
ticks; fixed for the process's life and never changed by exec."""


@dataclass(frozen=True)
class ProcessIdentity:
    """What tells the process we started from a later one that was given the same PID.

    Two processes alive in one boot never share (PID, start time); the command line is
    compared too where both have one (a zombie's is empty, and so is a child's for a moment
    after exec).
    """

    pid: int
    boot_id: str
    start_ticks: int
    cmdline: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "boot_id": self.boot_id,
            "start_ticks": self.start_ticks,
            "cmdline": list(self.cmdline),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ProcessIdentity:
        return cls(
            int(value["pid"]),
            str(value["boot_id"]),
            int(value["start_ticks"]),
            tuple(str(arg) for arg in value["cmdline"]),
        )


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of the process that has `pid` now; None when there is none (or no /proc)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        raw_cmdline = (PROC / str(pid) / "cmdline").read_bytes()
        boot_id = BOOT_ID.read_text().strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ")": split after the last.
    fields_after_name = stat.rsplit(")", 1)[1].split()
    start_ticks = int(fields_after_name[STAT_START_TIME_FIELD - 3])
    cmdline = tuple(arg.decode(errors="surrogateescape") for arg in raw_cmdline.split(b"\0")[:-1])
    return ProcessIdentity(pid, boot_id, start_ticks, cmdline)


EXEC_SETTLE_SECONDS: Final = 1.0
"""Popen returns as exec closes the child's descriptors, a moment before the kernel sets up
its new command line; /proc/PID/cmdline reads empty in between."""


def _identity_after_exec(process: subprocess.Popen[bytes]) -> ProcessIdentity | None:
    """The child's identity with its new command line (start time alone if it never shows)."""
    deadline = time.monotonic() + EXEC_SETTLE_SECONDS
    identity = identify(process.pid)
    while identity is not None and not identity.cmdline and time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        time.sleep(0.01)
        identity = identify(process.pid)
    return identity


def is_same_process(recorded: ProcessIdentity) -> bool:
    """Whether `recorded.pid` still names the process `recorded` was taken from."""
    current = identify(recorded.pid)
    if current is None:
        return False
    if (current.boot_id, current.start_ticks) != (recorded.boot_id, recorded.start_ticks):
        return False
    return not (current.cmdline and recorded.cmdline) or current.cmdline == recorded.cmdline


class Ports:
    """Listening sockets bound on port 0 and held until the process that serves them starts."""

    def __init__(self) -> None:
        self._held: dict[int, socket.socket] = {}

    def reserve(self) -> int:
        sock = socket.create_server((HOST, 0))
        port = int(sock.getsockname()[1])
        self._held[port] = sock
        return port

    def take(self, ports: Iterable[int]) -> list[socket.socket]:
        """The held sockets for `ports` (ports not held here are bound by the child itself)."""
        return [self._held.pop(port) for port in ports if port in self._held]

    def close(self) -> None:
        """Release what no child took (a federation that was only built, or failed to start)."""
        for sock in self._held.values():
            sock.close()
        self._held.clear()


@dataclass
class Child:
    """A started process, its log, and what it was started as."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    identity: ProcessIdentity | None = None  # None when it was gone before it could be recorded

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_running(self) -> None:
        """Raise, quoting the end of its log, if the process has exited."""
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with status {code} while starting; {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-LOG_LINES_SHOWN:]
        except OSError as exc:
            return f"its log {self.log_path} cannot be read: {exc}"
        return f"the end of {self.log_path}:\n" + "\n".join(lines)


def spawn(
    name: str,
    args: list[str],
    log_path: Path,
    *,
    cwd: Path,
    listening: Iterable[socket.socket] = (),
    environ: Mapping[str, str] | None = None,
) -> Child:
    """Start `args` in its own session, output appended to `log_path`, serving `listening`.

    The sockets are the child's from here on: the parent's copies are closed, so when the child
    exits its ports stop accepting connections, as a stopped server's do.
    """
    sockets = list(listening)
    env = dict(os.environ if environ is None else environ)
    env.pop(LISTEN_FDS_ENV, None)  # sockets handed to this process are not the child's
    if sockets:
        env[LISTEN_FDS_ENV] = listen_fds_value(
            {f"{HOST}:{sock.getsockname()[1]}": sock.fileno() for sock in sockets}
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=cwd,
                env=env,
                pass_fds=[sock.fileno() for sock in sockets],
            )
    finally:
        for sock in sockets:
            sock.close()
    return Child(name, process, log_path, _identity_after_exec(process))


def wait_http(url: str, deadline: float, child: Child | None = None) -> None:
    """Until `url` answers below 500; fails at the deadline, or at once when `child` exits."""
    while time.monotonic() < deadline:
        if child is not None:
            child.check_running()
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{url} did not come up in time")


def wait_for(
    condition: Callable[[], bool], deadline: float, what: str, children: Iterable[Child] = ()
) -> None:
    """Until `condition` holds; fails at the deadline, or at once when one of `children` exits."""
    watched = list(children)
    while not condition():
        for child in watched:
            child.check_running()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)


def stop_processes(processes: Mapping[str, ProcessIdentity], grace_seconds: float = 15.0) -> list[str]:
    """SIGTERM each process group, then SIGKILL those still there after the grace period.

    Only groups whose leader is still the recorded process are signalled; returns the names
    of those left alone because their PID now names another process (or none). Each is
    checked again right before each signal.
    """
    ours = {name: identity for name, identity in processes.items() if is_same_process(identity)}
    for identity in ours.values():
        _signal_group(identity, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for identity in ours.values():
        while time.monotonic() < deadline and alive(identity.pid):
            time.sleep(0.05)
        if alive(identity.pid):
            _signal_group(identity, signal.SIGKILL)
    return [name for name in processes if name not in ours]


def _signal_group(identity: ProcessIdentity, signum: signal.Signals) -> None:
    if is_same_process(identity):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(identity.pid, signum)


def alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
