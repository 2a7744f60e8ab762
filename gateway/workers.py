"""Several worker processes for one gateway node: a pre-fork parent and each worker's role.

One Python process uses one core. `xgate gateway serve --workers N` starts a parent that binds
every listening socket once (or takes the ones its own parent handed over, gateway.listeners),
prepares the databases, and starts N workers that each serve all interfaces on those same
sockets: the kernel gives each new connection to whichever worker accepts it first. A shared
socket rather than SO_REUSEPORT's one socket per worker: a worker that dies leaves no accept
queue behind, so no connection waits for a process that is gone.

What the workers share, and how (DESIGN.md "Scaling out": nothing in a worker's memory is the
only copy of anything that must survive):
- keys and configuration: each reads the same files; the server configuration is the
  database, which every worker polls (runtime.SNAPSHOT_POLL_SECONDS), as nodes do;
- the message log: one chain per worker, named `<node>/w<index>`, each with its own writer,
  batch timestamper, signed heads and archive directory. One writer for the whole node would
  need every record to cross a process boundary on the request path; a chain per worker keeps
  group commit and batch timestamping inside each worker with no lock between them;
- the global configuration and OCSP responses for the node's own certificates: fetched by
  worker 0 only, which stores them on disk as a single node does; the others read what it
  stored when it changes (:attr:`WorkerRole.fetches`);
- replay protection and the cache: the database, as between nodes;
- the admin interface (management API, health): worker 0 alone serves it, since it keeps
  per-node state in memory (log verification jobs); the others take its changes from the
  database within a second.

SIGTERM or SIGINT to the parent is passed to every worker, each of which drains (stops
accepting, lets in-flight exchanges finish within limits.shutdown_grace_seconds) and exits;
the parent exits when all have. A worker that dies while the node runs is started again (its
chain goes on); one that fails at once at start (a bad key, a database it cannot open) stops
the node, since its siblings would fail the same way. A worker whose parent is gone drains
and exits too, so a node killed outright leaves no worker serving on its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from gateway.config import ConfigError, MetricsSettings, NodeConfig
from gateway.listeners import LISTEN_FDS_ENV, listen_fds_value, listening_socket

log = logging.getLogger(__name__)

WORKER_ENV: Final = "XGATE_WORKER"
"""`index/count`: set by the parent for each worker it starts."""

FAILED_START_SECONDS: Final = 10.0
"""A worker that exits within this long after it started failed at start: restarting it would
fail again, so the node stops and says why."""
RESTART_DELAY_SECONDS: Final = 1.0
"""Between a worker's death and its restart, so one that keeps dying does not spin a core."""
POLL_SECONDS: Final = 0.2
"""How often the parent looks at its workers; it has nothing else to do."""
KILL_MARGIN_SECONDS: Final = 10.0
"""Beyond the shutdown grace period, how long a worker may take to exit before it is killed."""
PARENT_CHECK_SECONDS: Final = 1.0
"""How often a worker checks that its parent still runs."""


@dataclass(frozen=True)
class WorkerRole:
    """Which of the node's workers this process is; the default is a node of one process."""

    index: int = 0
    count: int = 1

    @property
    def name(self) -> str | None:
        """How this worker names itself in log lines: `w<index>`, or None for a node of one process."""
        return f"w{self.index}" if self.count > 1 else None

    def metrics(self, settings: MetricsSettings) -> MetricsSettings:
        """Where this worker serves its metrics: each counts its own exchanges, so worker i
        listens on the configured port + i (port 0, any free port, stays 0)."""
        if self.index == 0 or settings.listener.port == 0:
            return settings
        listener = replace(settings.listener, port=settings.listener.port + self.index)
        return replace(settings, listener=listener)

    @property
    def fetches(self) -> bool:
        """This worker fetches the global configuration and OCSP responses and runs the node's
        once-per-node duties (cache replication, purging replay keys); the others read its files."""
        return self.index == 0

    def chain_node(self, node: str) -> str:
        """The message-log chain this worker writes: the node's own name when it is alone."""
        return node if self.count == 1 else f"{node}/w{self.index}"

    def archive_dir(self, archive_dir: Path | None) -> Path | None:
        """A chain's archives follow each other in one directory: one subdirectory per worker."""
        if archive_dir is None or self.count == 1:
            return archive_dir
        return archive_dir / f"w{self.index}"

    def to_env(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WorkerRole:
        value = (os.environ if environ is None else environ).get(WORKER_ENV, "")
        index, _, count = value.partition("/")
        if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
            return cls()
        return cls(int(index), int(count))


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def with_role(config: NodeConfig, role: WorkerRole) -> NodeConfig:
    """The node's configuration as worker `role` uses it: its own archive directory."""
    if config.messagelog is None or role.count == 1:
        return config
    settings = replace(config.messagelog, archive_dir=role.archive_dir(config.messagelog.archive_dir))
    return replace(config, messagelog=settings)


def watch_parent() -> Iterator[bool]:
    """Yields True while the process that started this worker runs (its PID is still our parent)."""
    parent = os.getppid()
    while True:
        yield os.getppid() == parent


# --- the parent -------------------------------------------------------------------------------


def _listeners(config: NodeConfig) -> list[tuple[str, int]]:
    """The interfaces a worker serves (gateway.node._start_interfaces): a socket bound for one it
    does not serve would take connections that nobody accepts."""
    https = config.internal_https if config.internal_tls is not None else None
    listeners = [config.internal_http, https, config.external, config.admin]
    return [(listener.host, listener.port) for listener in listeners if listener is not None]


def _bind(config: NodeConfig) -> dict[str, socket.socket]:
    """Every interface's listening socket, bound (or taken over) once for all workers."""
    sockets: dict[str, socket.socket] = {}
    try:
        for host, port in _listeners(config):
            try:
                sock = listening_socket(host, port)
            except OSError as exc:  # worded as aiohttp words it when a single process binds
                reason = (exc.strerror or str(exc)).lower()
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {(host, port)!r}: {reason}"
                ) from exc
            with contextlib.suppress(OSError):
                sock.listen()
            sockets[f"{host}:{port}"] = sock
    except OSError:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


def _worker_command(config_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gateway.cli",
        "gateway",
        "serve",
        "--config",
        str(config_path),
        "--workers",
        "1",
    ]


@dataclass
class _Worker:
    role: WorkerRole
    process: subprocess.Popen[bytes]
    started: float


class Supervisor:
    """The pre-fork parent: starts the workers, restarts one that dies, drains all on a signal."""

    def __init__(self, config_path: Path, config: NodeConfig, count: int) -> None:
        self.config_path = config_path
        self.config = config
        self.count = count
        self._stopping = False
        self._sockets: dict[str, socket.socket] = {}
        self._workers: dict[int, _Worker] = {}

    def _start(self, index: int) -> None:
        role = WorkerRole(index, self.count)
        env = dict(os.environ)
        env[WORKER_ENV] = role.to_env()
        env[LISTEN_FDS_ENV] = listen_fds_value({a: s.fileno() for a, s in self._sockets.items()})
        process = subprocess.Popen(
            _worker_command(self.config_path),
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=[s.fileno() for s in self._sockets.values()],
        )
        self._workers[index] = _Worker(role, process, time.monotonic())
        log.info("worker %d of %d started (pid %d)", index, self.count, process.pid)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self._stopping:
            log.info("gateway %s stopping: draining %d workers", self.config.server_id, self.count)
        self._stopping = True

    def run(self) -> int:
        """Serve until a signal; the exit status: 0 after a drain, 1 when a worker failed at start."""
        self._sockets = _bind(self.config)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        status = 0
        try:
            for index in range(self.count):
                self._start(index)
            status = self._supervise()
        finally:
            self._drain()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return status

    def _supervise(self) -> int:
        while not self._stopping:
            time.sleep(POLL_SECONDS)
            for index, worker in list(self._workers.items()):
                code = worker.process.poll()
                if code is None or self._stopping:
                    continue
                if time.monotonic() - worker.started < FAILED_START_SECONDS:
                    log.error("worker %d exited with %d at start: stopping the node", index, code)
                    return 1
                log.warning("worker %d exited with %d: starting it again", index, code)
                time.sleep(RESTART_DELAY_SECONDS)
                self._start(index)
        return 0

    def _drain(self) -> None:
        """SIGTERM to every worker, then wait for them; one still running past the grace is killed.

        The parent's copies of the sockets close first: a listening socket stops accepting
        only once no process holds it.
        """
        for sock in self._sockets.values():
            sock.close()
        running = [w.process for w in self._workers.values() if w.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_grace_seconds + KILL_MARGIN_SECONDS
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop within the grace period: killing it", process.pid)
                process.kill()
                process.wait()


def run_workers(config_path: Path, config: NodeConfig, count: int) -> None:
    """The node as `count` workers under one parent, until SIGTERM or SIGINT."""
    if Supervisor(config_path, config, count).run() != 0:
        raise ConfigError(f"gateway {config.server_id} cannot start: a worker failed (see its log above)")
