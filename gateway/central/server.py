"""Running the registry: database, signing keys, the two listeners and the publishing timer.

`xgate central serve --config FILE` calls :func:`run`; tests call :func:`start_registry`,
which binds the listeners itself (port 0 picks free ports) and answers their URLs. At
start-up the registry migrates its database, stores the federation settings the file
gives if the database has none yet, imports the file's signing keys it does not know, and
publishes a fresh version, so gateways never wait a whole interval after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import web

from gateway.central.api import RegistryContext, make_management_app
from gateway.central.config import CentralConfig, load_config
from gateway.central.db import migrate
from gateway.central.distribution import GLOBALCONF_PATH, make_distribution_app
from gateway.central.publisher import ConfigurationPublisher, load_signing_key
from gateway.central.repository import CentralRepository
from gateway.config import ConfigError, Listener
from gateway.connections import LimitedSite
from gateway.crypto.certs import fingerprint_sha256, load_certificate_file
from gateway.globalconf import GlobalConfSettings
from gateway.listeners import listening_socket
from gateway.logsetup import LogSetupError, setup_logging

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS: Final = 5.0
"""Requests in flight at shutdown get this long; registry requests are short."""

_ALL_INTERFACES: Final = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - a check, not a bind


def prepare(config: CentralConfig, environ: Mapping[str, str]) -> CentralRepository:
    """Migrate, store first settings, import the file's signing keys; the repository to serve from."""
    migrate(config.database_url)
    repository = CentralRepository.from_url(config.database_url, config.instance)
    wanted = GlobalConfSettings(
        validity_seconds=config.validity_seconds, refresh_interval_seconds=config.refresh_interval_seconds
    )
    stored = repository.initialise_settings(wanted)
    if (stored.validity_seconds, stored.refresh_interval_seconds) != (
        wanted.validity_seconds,
        wanted.refresh_interval_seconds,
    ):
        log.warning(
            "the registry's settings differ from the file's [globalconf] (the file seeds them only at first "
            "start): change them with `xgate central settings set`"
        )
    import_signing_keys(repository, config, environ)
    return repository


def import_signing_keys(
    repository: CentralRepository, config: CentralConfig, environ: Mapping[str, str]
) -> None:
    """Register the file's keys the registry does not know; the file's active one if none is active."""
    known = {key.sha256: key for key in repository.signing_keys()}
    for files in config.signing_keys:
        try:
            certificate = load_certificate_file(files.cert)
        except OSError as exc:
            raise ConfigError(f"cannot read signing certificate {files.cert}: {exc}") from exc
        load_signing_key(
            str(files.key), files.passphrase_env, certificate, environ
        )  # fail now, not at publishing
        sha256 = fingerprint_sha256(certificate)
        has_active = any(key.status == "active" for key in repository.signing_keys())
        if sha256 not in known:
            repository.add_signing_key(
                str(files.key),
                certificate,
                passphrase_env=files.passphrase_env,
                activate=files.active and not has_active,
            )
            log.info("configuration-signing key %s imported from the configuration file", sha256)
        elif files.active and known[sha256].status != "active":
            log.warning(
                "the file marks signing key %s active, but the registry signs with another: the registry's "
                "state wins (`xgate central signing-keys activate` switches)",
                sha256,
            )


def _bind(listener: Listener) -> socket.socket:
    return listening_socket(listener.host, listener.port)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass
class RunningRegistry:
    """A started registry; :meth:`stop` ends it."""

    context: RegistryContext
    management_url: str
    distribution_url: str
    sites: list[LimitedSite] = field(default_factory=list)
    """The distribution and the management listener, with their connection counts."""
    _runners: list[web.AppRunner] = field(default_factory=list)
    _timer: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        for runner in self._runners:
            await runner.cleanup()
        self.context.repository.engine.dispose()


async def start_registry(
    config: CentralConfig, *, environ: Mapping[str, str] | None = None
) -> RunningRegistry:
    """Prepare the database, bind both listeners, publish, and start the timer."""
    env = environ if environ is not None else os.environ
    if config.public_url is None and config.distribution.host in _ALL_INTERFACES:
        raise ConfigError("distribution.public_url is needed when listening on all interfaces")
    repository = await asyncio.to_thread(prepare, config, env)
    sockets = [_bind(config.distribution), _bind(config.management)]
    distribution_port = sockets[0].getsockname()[1]
    management_port = sockets[1].getsockname()[1]
    distribution_url = _url(config.distribution.host, distribution_port)
    public_url = config.public_url or distribution_url
    publisher = ConfigurationPublisher(repository, regenerate_seconds=config.regenerate_seconds, environ=env)
    context = RegistryContext(repository, publisher, (public_url + GLOBALCONF_PATH,))
    await publisher.publish_soon()

    running = RunningRegistry(context, _url(config.management.host, management_port), distribution_url)
    try:
        for app, sock in zip(
            (make_distribution_app(context), make_management_app(context)), sockets, strict=True
        ):
            runner = web.AppRunner(
                app,
                shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
                access_log=None,
                **config.connections.runner_options(),
            )
            await runner.setup()
            running._runners.append(runner)
            # Deadlines and a cap per listener, as a gateway's (gateway/node.py).
            site = LimitedSite(runner, config.connections, sock=sock)
            await site.start()
            running.sites.append(site)
    except BaseException:
        await running.stop()
        for sock in sockets:
            sock.close()
        raise
    running._timer = asyncio.create_task(publisher.run(), name="globalconf-publisher")
    log.info(
        "registry %s: management API at %s, configuration at %s",
        config.instance,
        running.management_url,
        context.configuration_urls[0],
    )
    return running


def run(config_path: Path) -> None:
    """Serve until SIGTERM or SIGINT (`xgate central serve`)."""
    config = load_config(config_path)
    try:
        logs = setup_logging(config.logging)
    except LogSetupError as exc:
        raise ConfigError(str(exc)) from None

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        running = await start_registry(config)
        try:
            await stop.wait()
        finally:
            await running.stop()

    try:
        asyncio.run(serve())
    finally:
        logs.close()
