"""Prometheus metrics of one node, served on their own listener (docs/metrics.md).

`NodeRegistry` is the node's own prometheus_client registry (never the library's global one:
tests run several nodes in one process): the exchange counts (gateway.metrics.exchanges),
the node's state read at scrape time (gateway.metrics.node) and the process's CPU, memory and
file descriptors. `start_metrics_listener` serves it as `GET /metrics` on the `[metrics]`
listener, apart from the admin interface, so that a Prometheus on another host may scrape it
without reaching the management API.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest

from gateway.config import MetricsSettings
from gateway.connections import ConnectionLimits
from gateway.listeners import site
from gateway.metrics.exchanges import ExchangeMetrics
from gateway.metrics.node import NodeMetrics
from gateway.proxy.runtime import GatewayRuntime
from gateway.serverconf.repository import ServerConfSnapshot

__all__ = ["ExchangeMetrics", "NodeMetrics", "NodeRegistry", "start_metrics_listener"]


class NodeRegistry:
    """One node's metrics: its exchange observer and collectors in a registry of its own."""

    def __init__(
        self, runtime: GatewayRuntime, runners: Iterable[web.BaseRunner], *, max_label_values: int
    ) -> None:
        self._runtime = runtime
        self._known_of: tuple[ServerConfSnapshot | None, frozenset[str]] = (None, frozenset())
        self.exchanges = ExchangeMetrics(max_label_values=max_label_values, known=self._registered)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.exchanges)
        self.registry.register(NodeMetrics(runtime, runners))
        ProcessCollector(registry=self.registry)

    def _registered(self, value: str) -> bool:
        """Whether the server configuration names `value`: a hosted subsystem or one of its services."""
        snapshot = self._runtime.snapshot
        if self._known_of[0] is not snapshot:
            names = {client.to_text() for client in snapshot.subsystems}
            names.update(service.to_text() for service in snapshot.services)
            self._known_of = (snapshot, frozenset(names))
        return value in self._known_of[1]

    def exposition(self) -> bytes:
        """The text exposition format, read on the event loop (the state is the loop's)."""
        return generate_latest(self.registry)


def metrics_app(registry: NodeRegistry) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=registry.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def start_metrics_listener(
    settings: MetricsSettings,
    runtime: GatewayRuntime,
    runners: list[web.AppRunner],
    limits: ConnectionLimits,
    shutdown_timeout: float,
) -> NodeRegistry:
    """Count exchanges from now on and serve `/metrics`; its runner joins `runners` (and its
    listener is counted among the node's open connections like the others)."""
    registry = NodeRegistry(runtime, runners, max_label_values=settings.max_label_values)
    runtime.exchange_observers.append(registry.exchanges)
    runner = web.AppRunner(
        metrics_app(registry), shutdown_timeout=shutdown_timeout, access_log=None, **limits.runner_options()
    )
    await runner.setup()
    runners.append(runner)
    listener = settings.listener
    await site(runner, listener.host, listener.port, reuse_address=True, limits=limits).start()
    return registry
