"""The development federation's processes: ports held until a child serves them, start-up waits
that notice a dead child at once, and stopping.

Ports: the parent binds each listening socket on 127.0.0.1 port 0 (:class:`Ports`), writes the
port the system gave into the child's configuration, and hands the socket itself to the child
(`gateway.listeners`). No other process can take the port in between, as it could when a free
port was looked up, closed, and bound again by the child.

Waits: every wait for a child to answer also watches the child; when it exits first the wait
fails at once, quoting the end of the child's log, instead of running to its deadline.
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
from typing import Final

import requests

from gateway.listeners import LISTEN_FDS_ENV, listen_fds_value

HOST: Final = "127.0.0.1"
POLL_SECONDS: Final = 0.1
LOG_LINES_SHOWN: Final = 20
"""How much of a dead child's log a failed wait quotes: enough for a traceback's end."""


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
    return Child(name, process, log_path)


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


def stop_pids(pids: Mapping[str, int], grace_seconds: float = 15.0) -> None:
    """SIGTERM each process group, then SIGKILL those still there after the grace period."""
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for pid in pids.values():
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


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
