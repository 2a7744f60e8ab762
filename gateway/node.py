"""One gateway node process: the internal, external and admin interfaces (DESIGN.md).

Starts from a TOML file, serves until SIGTERM/SIGINT, then stops accepting and lets
in-flight requests finish within the configured grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import ssl
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from gateway.cache.db import migrate as migrate_cache
from gateway.config import ConfigError, NodeConfig, load_config
from gateway.configfile import Listener, check_database_directory, ensure_data_dir, sqlite_file
from gateway.connections import ConnectionLimits
from gateway.crypto.certs import CertificateError, load_certificate_file
from gateway.crypto.keys import KeyFileError
from gateway.crypto.tls import external_server_context, internal_server_context
from gateway.db import SchemaTooNew
from gateway.globalconf import GlobalConfError
from gateway.heap import return_large_buffers
from gateway.listeners import site
from gateway.logsetup import LogSetupError, setup_logging
from gateway.messagelog.db import migrate as migrate_log
from gateway.monitoring.accesslog import AccessLog
from gateway.monitoring.environment import EnvironmentCollector, NodeCertificate, NodeSurroundings
from gateway.monitoring.operational.db import migrate as migrate_opmon
from gateway.proxy.consumer import make_internal_app
from gateway.proxy.health import NodeHealth, make_health_app
from gateway.proxy.provider import make_external_app
from gateway.proxy.runtime import GatewayRuntime
from gateway.serverconf.db import migrate
from gateway.serverconf.repository import ServerConfRepository
from gateway.workers import PARENT_CHECK_SECONDS, WorkerRole, run_workers, watch_parent, with_role

log = logging.getLogger(__name__)


def _admin_app(
    runtime: GatewayRuntime, health: NodeHealth, started_at: float | None = None
) -> web.Application:
    from gateway.admin.api import AdminContext, make_admin_app
    from gateway.messagelog.inspector import LogInspector

    messagelog = runtime.messagelog
    current_conf = lambda: runtime.globalconf_source.current  # noqa: E731 - read at each use
    inspector = None if messagelog is None else LogInspector.of_node(messagelog, current_conf)
    context = AdminContext(
        repository=runtime.repository,
        data_dir=runtime.config.data_dir,
        health=health.detail,
        server_id=runtime.config.server_id,
        on_change=runtime.reload_snapshot,
        message_log=inspector,
        cache=runtime.cache,
        replicator=lambda: runtime.replicator,
        globalconf=current_conf,
        maintenance=runtime.maintenance,
        in_flight=runtime.in_flight,
        opmonitor=runtime.opmonitor,
        environment=EnvironmentCollector(surroundings(runtime, started_at or time.time())).collect,
    )
    app = make_admin_app(context)
    if inspector is not None:

        async def stop_verification(_app: web.Application) -> None:
            """A running log verification ends before the node closes the database it reads."""
            await asyncio.to_thread(inspector.jobs.stop, VERIFICATION_STOP_SECONDS)

        app.on_cleanup.append(stop_verification)
    return app


def surroundings(runtime: GatewayRuntime, started_at: float) -> NodeSurroundings:
    """What the environment report reads of this node: its directories and its certificates."""
    config = runtime.config
    directories: dict[str, Path] = {"data": config.data_dir}
    databases = [("serverconf", config.database_url)]
    if config.messagelog is not None and config.messagelog.enabled:
        databases.append(("messagelog", config.messagelog.database_url))
        if config.messagelog.archive_dir is not None:
            directories["archive"] = config.messagelog.archive_dir
    if config.cache is not None and config.cache.enabled:
        databases.append(("cache", config.cache.database_url))
    for role, url in databases:
        file = sqlite_file(url)
        if file is not None:
            directories[role] = file.parent
    certificates = [NodeCertificate("auth", runtime.auth_cert)]
    certificates += [
        NodeCertificate("signing", cert, member.to_text()) for member, cert in runtime.signing_certs.items()
    ]
    if config.internal_tls is not None:
        try:
            internal = load_certificate_file(config.internal_tls.cert)
            certificates.append(NodeCertificate("internal_tls", internal))
        except (OSError, CertificateError) as exc:  # the listener reports it; the rest still shows
            log.warning("internal TLS certificate %s not readable: %s", config.internal_tls.cert, exc)

    def ocsp() -> dict[str, dict[str, object]]:
        if runtime.own_status is None:
            return {}
        health = runtime.own_status.health(dt.datetime.now(dt.UTC))
        entries: list[dict[str, object]] = health["certificates"]  # type: ignore[assignment]
        return {str(entry["serial"]): entry for entry in entries}

    return NodeSurroundings(started_at, directories, certificates, ocsp)


VERIFICATION_STOP_SECONDS: Final = 10.0
"""How long shutdown waits for a verification job to reach its next page (a page takes well
under a second)."""


def prepare_databases(config: NodeConfig) -> bool:
    """Every database at its newest schema, the owner registered as a client; True if it was not.

    A node of several workers does this once in the parent, before any worker opens them:
    schema migrations racing each other could fail where one alone succeeds.
    """
    migrate(config.database_url)
    if config.messagelog is not None and config.messagelog.enabled:
        migrate_log(config.messagelog.database_url)
    if config.cache is not None and config.cache.enabled:
        migrate_cache(config.cache.database_url)
    if config.monitoring is not None and config.monitoring.enabled:
        migrate_opmon(config.monitoring.database_url)
    repository = ServerConfRepository.from_url(config.database_url)
    try:
        registered = repository.register_owner(config.server_id.owner)
    finally:
        repository.engine.dispose()
    if registered:
        log.info(
            "owner member %s registered as a client (X-Road lists it among the clients)",
            config.server_id.owner,
        )
    return registered


async def serve(
    config: NodeConfig,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    worker: WorkerRole | None = None,
    config_path: Path | None = None,
) -> None:
    """Serve until `stop` (or SIGTERM/SIGINT); as one of several workers when `worker` says so.
    `config_path` is the TOML file scheduled backups take (worker 0 makes them, once per node)."""
    started_at = time.time()
    worker = worker or WorkerRole()
    if worker.count == 1:
        prepare_databases(config)  # a parent of several workers did it before starting them
    runtime = GatewayRuntime.create(with_role(config, worker), worker=worker)
    if config.logging.access_log:
        runtime.exchange_observers.append(AccessLog())
    await runtime.start()
    runners: list[web.AppRunner] = []
    backups = _start_backups(config, config_path) if worker.fetches else None
    try:
        # A node that cannot open every interface stops cleanly rather than serve half.
        await _start_interfaces(config, runtime, runners, started_at)
        log.info("gateway %s serving", config.server_id)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread (tests run nodes in threads) there are no signal handlers.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        if worker.count > 1:
            runtime.add_task(_stop_without_parent(stop))
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("gateway %s stopping: finishing in-flight requests", config.server_id)
    finally:
        if backups is not None:
            backups.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await backups
        for runner in runners:
            await runner.cleanup()
        await runtime.close()


async def _stop_without_parent(stop: asyncio.Event) -> None:
    """A worker whose parent is gone (killed outright) drains and exits rather than serve alone."""
    for parent_runs in watch_parent():
        if not parent_runs:
            log.warning("the node's parent process is gone: this worker stops")
            stop.set()
            return
        await asyncio.sleep(PARENT_CHECK_SECONDS)


def _start_backups(config: NodeConfig, config_path: Path | None) -> asyncio.Task[None] | None:
    """The [backup] schedule in the background (gateway.backup), if the file has one."""
    if config.backup is None or config_path is None:
        return None
    from gateway.backup import run_schedule

    log.info("backups every %g s into %s", config.backup.interval_seconds, config.backup.directory)
    return asyncio.create_task(run_schedule(config_path, config.server_id.to_text(), config.backup))


async def _start_interfaces(
    config: NodeConfig, runtime: GatewayRuntime, runners: list[web.AppRunner], started_at: float
) -> None:
    """Metrics, internal, external and admin interfaces; each runner goes into `runners` once set up."""
    grace = config.shutdown_grace_seconds
    limits = config.connections
    options = limits.runner_options()
    if config.metrics is not None:  # first: it counts every exchange the interfaces serve
        from gateway.metrics import start_metrics_listener

        # Each worker counts its own exchanges: worker i serves them on the port + i (docs/metrics.md).
        settings = runtime.worker.metrics(config.metrics)
        try:
            await start_metrics_listener(settings, runtime, runners, limits, grace)
        except OSError as exc:
            if runtime.worker.index == 0:
                raise
            # Worker 0's port is the configured one; another worker's port + i may be taken by
            # someone else: that worker serves without metrics rather than take the node down.
            log.warning(
                "metrics of worker %d not served on port %d: %s",
                runtime.worker.index,
                settings.listener.port,
                exc,
            )

    internal = web.AppRunner(make_internal_app(runtime), shutdown_timeout=grace, access_log=None, **options)
    await internal.setup()
    runners.append(internal)
    if config.internal_http is not None:
        await _site(internal, config.internal_http, limits).start()
    if config.internal_https is not None and config.internal_tls is not None:
        context = internal_server_context(config.internal_tls.identity(), ())
        runtime.internal_tls_context = context
        runtime.trust_pinned_certificates()
        await _site(internal, config.internal_https, limits, context).start()

    external = web.AppRunner(make_external_app(runtime), shutdown_timeout=grace, access_log=None, **options)
    await external.setup()
    runners.append(external)
    # The federation's CAs join both interfaces' handshake trust as configurations bring them.
    runtime.external_tls_context = external_server_context(config.auth_tls.identity(), ())
    runtime.trust_federation_cas()
    await _site(external, config.external, limits, runtime.external_tls_context).start()

    if not runtime.worker.fetches:
        # The admin interface holds per-node state in memory (verification jobs), and health
        # judges the node by what worker 0 fetches: worker 0 alone serves both, and the others
        # see the admin interface's changes through the database.
        return
    node_health = NodeHealth.of_node(runtime)
    admin = web.AppRunner(
        _admin_app(runtime, node_health, started_at), shutdown_timeout=grace, access_log=None, **options
    )
    await admin.setup()
    runners.append(admin)
    await _site(admin, config.admin, limits).start()

    # The load balancers' probe, apart from the management API (docs/operations.md).
    if config.health.listener is not None:
        health = web.AppRunner(make_health_app(node_health), shutdown_timeout=grace, access_log=None)
        await health.setup()
        runners.append(health)
        await _site(health, config.health.listener, limits).start()


def _site(
    runner: web.AppRunner,
    listener: Listener,
    limits: ConnectionLimits,
    ssl_context: ssl.SSLContext | None = None,
) -> web.BaseSite:
    """A listener held to the node's connection limits (header, body and idle deadlines, a cap)."""
    return site(
        runner, listener.host, listener.port, ssl_context=ssl_context, reuse_address=True, limits=limits
    )


INIT_HINT = "set up a node with `xgate gateway init DIR`"


def prepare_directories(config: NodeConfig) -> None:
    """The data directory (created when only it is missing) and the SQLite databases' directories."""
    ensure_data_dir(config.data_dir, "node.data_dir", INIT_HINT)
    check_database_directory(config.database_url, "node.database_url")
    if config.messagelog is not None and config.messagelog.enabled:
        check_database_directory(config.messagelog.database_url, "messagelog.database_url")


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop's event loop where it is installed (it saves ~18 µs of CPU per hop, STACK.md) and
    not turned off with XGATE_EVENT_LOOP=asyncio; asyncio's own loop otherwise."""
    if os.environ.get("XGATE_EVENT_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop  # optional: there is no build for every platform
        except ImportError:
            log.info("uvloop is not installed: running on asyncio's event loop")
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def run(config_path: Path, workers: int = 1) -> None:
    """Serve the node in `config_path` as one process, or as `workers` under a parent (gateway.workers)."""
    worker = WorkerRole.from_env()
    config = load_config(config_path)
    try:
        logs = setup_logging(config.logging, worker=worker.name)
    except LogSetupError as exc:
        raise ConfigError(str(exc)) from None
    try:
        _run(config_path, config, workers, worker)
    finally:
        logs.close()


def _run(config_path: Path, config: NodeConfig, workers: int, worker: WorkerRole) -> None:
    return_large_buffers()  # memory comes back after bursts of large messages (gateway/heap.py)
    try:
        prepare_directories(config)
    except ConfigError as exc:
        raise ConfigError(f"gateway {config.server_id} cannot start: {exc}") from None
    try:
        if workers > 1:
            prepare_databases(config)
            run_workers(config_path, config, workers)
        else:
            _run_loop(serve(config, worker=worker, config_path=config_path))
    except (OSError, KeyFileError, GlobalConfError, SchemaTooNew) as exc:
        # A port in use, a key or anchor that cannot be read, a database a newer release
        # migrated: say which, without a traceback.
        raise ConfigError(f"gateway {config.server_id} cannot start: {exc}") from exc
    except SQLAlchemyError as exc:
        # SQLAlchemy's own message runs over several lines; the driver's says what went wrong.
        reason = getattr(exc, "orig", None) or exc
        raise ConfigError(f"gateway {config.server_id} cannot open its databases: {reason}") from exc
