"""One gateway node process: the internal, external and admin interfaces (DESIGN.md).

Starts from a TOML file, serves until SIGTERM/SIGINT, then stops accepting and lets
in-flight requests finish within the configured grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from gateway.config import ConfigError, NodeConfig, load_config
from gateway.configfile import Listener, check_database_directory, ensure_data_dir
from gateway.connections import ConnectionLimits
from gateway.crypto.keys import KeyFileError
from gateway.crypto.tls import external_server_context, internal_server_context
from gateway.db import SchemaTooNew
from gateway.globalconf import GlobalConfError
from gateway.heap import return_large_buffers
from gateway.listeners import site
from gateway.proxy.consumer import make_internal_app
from gateway.proxy.provider import make_external_app
from gateway.proxy.runtime import GatewayRuntime
from gateway.serverconf.db import migrate

log = logging.getLogger(__name__)


def _admin_app(runtime: GatewayRuntime) -> web.Application:
    from gateway.admin.api import AdminContext, make_admin_app
    from gateway.messagelog.inspector import LogInspector

    messagelog = runtime.messagelog
    current_conf = lambda: runtime.globalconf_source.current  # noqa: E731 - read at each use
    inspector = None if messagelog is None else LogInspector.of_node(messagelog, current_conf)
    context = AdminContext(
        repository=runtime.repository,
        data_dir=runtime.config.data_dir,
        health=runtime.health,
        server_id=runtime.config.server_id,
        on_change=runtime.reload_snapshot,
        message_log=inspector,
        cache=runtime.cache,
        replicator=lambda: runtime.replicator,
        globalconf=current_conf,
    )
    app = make_admin_app(context)
    if inspector is not None:

        async def stop_verification(_app: web.Application) -> None:
            """A running log verification ends before the node closes the database it reads."""
            await asyncio.to_thread(inspector.jobs.stop, VERIFICATION_STOP_SECONDS)

        app.on_cleanup.append(stop_verification)
    return app


VERIFICATION_STOP_SECONDS: Final = 10.0
"""How long shutdown waits for a verification job to reach its next page (a page takes well
under a second)."""


async def serve(
    config: NodeConfig,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    config_path: Path | None = None,
) -> None:
    """Serve until `stop` (or SIGTERM/SIGINT); `config_path` is the TOML file scheduled backups take."""
    migrate(config.database_url)
    runtime = GatewayRuntime.create(config)
    if runtime.repository.register_owner(config.server_id.owner):
        log.info(
            "owner member %s registered as a client (X-Road lists it among the clients)",
            config.server_id.owner,
        )
        runtime.reload_snapshot()
    await runtime.start()
    runners: list[web.AppRunner] = []
    backups = _start_backups(config, config_path)
    try:
        # A node that cannot open every interface stops cleanly rather than serve half.
        await _start_interfaces(config, runtime, runners)
        log.info("gateway %s serving", config.server_id)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread (tests run nodes in threads) there are no signal handlers.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
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


def _start_backups(config: NodeConfig, config_path: Path | None) -> asyncio.Task[None] | None:
    """The [backup] schedule in the background (gateway.backup), if the file has one."""
    if config.backup is None or config_path is None:
        return None
    from gateway.backup import run_schedule

    log.info("backups every %g s into %s", config.backup.interval_seconds, config.backup.directory)
    return asyncio.create_task(run_schedule(config_path, config.server_id.to_text(), config.backup))


async def _start_interfaces(
    config: NodeConfig, runtime: GatewayRuntime, runners: list[web.AppRunner]
) -> None:
    """Internal, external and admin interfaces; each runner goes into `runners` once set up."""
    grace = config.shutdown_grace_seconds
    limits = config.connections
    options = limits.runner_options()

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

    admin = web.AppRunner(_admin_app(runtime), shutdown_timeout=grace, access_log=None, **options)
    await admin.setup()
    runners.append(admin)
    await _site(admin, config.admin, limits).start()


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


def run(config_path: Path) -> None:
    logging.basicConfig(
        level=os.environ.get("XGATE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = load_config(config_path)
    return_large_buffers()  # memory comes back after bursts of large messages (gateway/heap.py)
    try:
        prepare_directories(config)
    except ConfigError as exc:
        raise ConfigError(f"gateway {config.server_id} cannot start: {exc}") from None
    try:
        _run_loop(serve(config, config_path=config_path))
    except (OSError, KeyFileError, GlobalConfError, SchemaTooNew) as exc:
        # A port in use, a key or anchor that cannot be read, a database a newer release
        # migrated: say which, without a traceback.
        raise ConfigError(f"gateway {config.server_id} cannot start: {exc}") from exc
    except SQLAlchemyError as exc:
        # SQLAlchemy's own message runs over several lines; the driver's says what went wrong.
        reason = getattr(exc, "orig", None) or exc
        raise ConfigError(f"gateway {config.server_id} cannot open its databases: {reason}") from exc
