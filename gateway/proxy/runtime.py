"""What one gateway node holds while it runs, shared by its consumer and provider handlers.

The global configuration, a snapshot of the server configuration, the signers of the
members it hosts and its outbound transports (gateway.outbound): one toward peer gateways,
one toward backends, one toward trust services. Nothing here is the
only copy of anything that must survive: the database and the cached configuration are.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import ssl
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509

from gateway import faults
from gateway.admission import Admission
from gateway.cache.policies import policies_of
from gateway.cache.replication import Fetch, Replicator
from gateway.cache.service import CacheService
from gateway.config import NodeConfig
from gateway.crypto.batchsigner import BatchSigner
from gateway.crypto.certs import fingerprint_sha256, load_certificate_file
from gateway.crypto.keys import load_private_key
from gateway.crypto.tls import add_client_trust, external_client_context, pem_bundle
from gateway.faults import XRoadFault
from gateway.globalconf.model import GlobalConf, GlobalConfError
from gateway.globalconf.signed import anchor_from_json
from gateway.globalconf.source import DOWNLOAD_TIMEOUT_SECONDS, GlobalConfSource, load_anchor
from gateway.ids import ClientId
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.service import MessageLog, node_name
from gateway.monitoring.exchange import ExchangeObserver, ExchangeRecord
from gateway.monitoring.maintenance import MaintenanceMode
from gateway.monitoring.operational.service import OperationalMonitor
from gateway.outbound import Transport
from gateway.outbound.clockcheck import ClockCheck
from gateway.outbound.network import backend_transport, peer_transport, service_transport
from gateway.proxy import ownstatus
from gateway.proxy.certstatus import PeerStatusChecker
from gateway.proxy.ownstatus import OwnCertificateStatus, OwnStatusUnavailable
from gateway.proxy.peers import PeerSelector
from gateway.proxy.replay import PURGE_INTERVAL_SECONDS, ReplayGuard
from gateway.serverconf.repository import ServerConfRepository, ServerConfSnapshot
from gateway.serverconf.seen import SeenRequests
from gateway.workers import WorkerRole

log = logging.getLogger(__name__)

# How often the node looks for changes other nodes (or the admin API) made to the database.
SNAPSHOT_POLL_SECONDS = 1.0
# How often a worker other than 0 looks for a global configuration worker 0 stored (gateway.workers):
# a stat of one file.
FOLLOW_SECONDS: Final = 1.0
FOLLOWER_START_WAIT_SECONDS: Final = DOWNLOAD_TIMEOUT_SECONDS + 5.0
"""How long such a worker waits at start for worker 0's first configuration (its download's limit)."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class GatewayRuntime:
    config: NodeConfig
    repository: ServerConfRepository
    globalconf_source: GlobalConfSource
    signers: dict[ClientId, BatchSigner]
    snapshot: ServerConfSnapshot
    auth_cert: x509.Certificate
    signing_certs: dict[ClientId, x509.Certificate]
    peer_selector: PeerSelector = field(default_factory=PeerSelector)
    _peers: Transport | None = None
    _backends: Transport | None = None
    _services: Transport | None = None
    _peers_given: bool = False
    internal_tls_context: ssl.SSLContext | None = None
    external_tls_context: ssl.SSLContext | None = None
    messagelog: MessageLog | None = None
    own_status: OwnCertificateStatus | None = None
    peer_status: PeerStatusChecker = field(default_factory=PeerStatusChecker)
    clock_check: ClockCheck = field(default_factory=ClockCheck)
    """What the trust services' signed times say about this node's clock (outbound.clockcheck)."""
    replay_guard: ReplayGuard | None = None
    """Refuses a signed request served before (proxy/replay.py), across the nodes sharing the database."""
    cache: CacheService | None = None
    """The interface cache (gateway.cache; proxy/cached.py on the request path), if enabled."""
    replicator: Replicator | None = None
    """Runs the `replicate` policies' plans (gateway.cache.replication), with the cache."""
    admission: Admission = field(default_factory=Admission)
    """The caps on exchanges per interface and body bytes per node (gateway/admission.py)."""
    exchange_observers: list[ExchangeObserver] = field(default_factory=list)
    """Told of every finished exchange (gateway.monitoring.exchange): metrics, operational
    monitoring, the access log. The proxy calls `observe_exchange` once per exchange."""
    maintenance: MaintenanceMode | None = None
    """The node's maintenance switch (gateway.monitoring.maintenance): health 503, traffic served."""
    opmonitor: OperationalMonitor | None = None
    """Operational monitoring (gateway.monitoring.operational), one of the exchange observers."""
    _trusted_pins: set[str] = field(default_factory=set)
    _federation_cas: set[str] = field(default_factory=set)
    _peer_context_cas: tuple[x509.Certificate, ...] = ()
    _anchor_bytes: bytes | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    worker: WorkerRole = field(default_factory=WorkerRole)
    """Which of the node's worker processes this is (gateway.workers): worker 0 fetches the
    global configuration and OCSP responses, the others read what it stored."""
    _globalconf_cache_seen: tuple[int, int] | None = None

    def observe_exchange(self, record: ExchangeRecord) -> None:
        """Hands a finished exchange to every observer; one failing observer never fails the
        exchange (it has been answered) nor silences the others."""
        for observer in self.exchange_observers:
            try:
                observer.exchange_done(record)
            except Exception:
                log.exception("exchange observer %r failed", observer)

    @classmethod
    def create(cls, config: NodeConfig, worker: WorkerRole | None = None) -> GatewayRuntime:
        """Reads keys, the anchor, the cached configuration and the database; no network yet."""
        worker = worker or WorkerRole()
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        repository = ServerConfRepository.from_url(config.database_url)
        source = GlobalConfSource(
            config.globalconf_location, load_anchor(config.globalconf_anchor), config.globalconf_cache
        )
        try:
            source.load_cached()
        except GlobalConfError as exc:
            log.warning("cached global configuration not usable: %s", exc)
        signers = {}
        signing_certs = {}
        record_signer = None
        for entry in config.signing_keys:
            passphrase = os.environ.get(entry.passphrase_env, "").encode() if entry.passphrase_env else None
            key = load_private_key(entry.key, passphrase or None)
            cert = load_certificate_file(entry.cert)
            signers[entry.member] = BatchSigner(key, cert, window_seconds=config.sign_window_seconds)
            signing_certs[entry.member] = cert
            if entry.member == config.server_id.owner:  # the owner's key signs the log (messagelog.logsig)
                record_signer = RecordSigner(key, cert)
        runtime = cls(
            config,
            repository,
            source,
            signers,
            repository.snapshot(),
            auth_cert=load_certificate_file(config.auth_tls.cert),
            signing_certs=signing_certs,
            clock_check=ClockCheck(config.clock_skew_seconds),
            admission=Admission(config.admission),
            worker=worker,
        )
        runtime.replay_guard = ReplayGuard(SeenRequests(repository.engine))
        runtime.maintenance = MaintenanceMode(config.data_dir)
        settings = config.messagelog
        if settings is not None and settings.enabled:
            runtime.messagelog = MessageLog(
                settings,
                gateway=config.server_id.to_text(),
                node=worker.chain_node(node_name()),
                globalconf=lambda: source.current,
                record_signer=record_signer,
                audit_head=repository.audit_head,
                clock_check=runtime.clock_check,
            )
        if config.cache is not None and config.cache.enabled:
            runtime.cache = CacheService.from_settings(config.cache)
        if config.monitoring is not None and config.monitoring.enabled:
            runtime.opmonitor = OperationalMonitor.from_settings(config.monitoring, node_name())
            runtime.exchange_observers.append(runtime.opmonitor)
        return runtime

    def in_flight(self) -> dict[str, int]:
        """Exchanges held or waiting per interface: what a draining operator watches go to 0."""
        return {name: gate.in_use + gate.waiting for name, gate in self.admission.interfaces.items()}

    async def start(
        self,
        *,
        peers: Transport | None = None,
        backends: Transport | None = None,
        services: Transport | None = None,
    ) -> None:
        """Fetch the configuration, open the transports, start the background loops.

        A transport given here is used instead of the node's own (tests run the paths in-process
        that way); the node closes what it was given like what it opened.
        """
        if self.worker.fetches:
            try:
                await self.globalconf_source.refresh()
            except GlobalConfError as exc:
                log.warning("global configuration not refreshed at start: %s", exc)
        else:
            await self._wait_for_globalconf_cache()
        self._backends = backends if backends is not None else backend_transport()
        self._services = services if services is not None else service_transport()
        self._peers, self._peers_given = peers, peers is not None
        self._reset_peer_transport()
        self.own_status = OwnCertificateStatus(
            self._services,
            [self.auth_cert, *self.signing_certs.values()],
            store_dir=self.config.ocsp_store_dir,
            fetch_interval_seconds=self.config.ocsp_fetch_interval_seconds,
            clock_check=self.clock_check,
        )
        self.peer_status.clock_skew = self.clock_check.tolerance
        if self.messagelog is not None:
            await self.messagelog.start(self._services)
        if self.opmonitor is not None:
            self.opmonitor.start()  # each worker writes its own records
        self.add_task(self._poll_snapshot())
        self.add_task(self._poll_globalconf() if self.worker.fetches else self._follow_globalconf())
        self.add_task(self._keep_own_status())
        if self.worker.fetches:  # once per node: the database is shared by all its workers
            self.add_task(self._purge_seen_requests())
            if self.cache is not None:
                self.add_task(self._maintain_cache(self.cache))
            if self.opmonitor is not None:
                self.add_task(self.opmonitor.purge_forever())

    def add_task(self, job: Coroutine[Any, Any, None]) -> None:
        """A background loop that runs until the node closes."""
        self._tasks.append(asyncio.create_task(job))

    def start_replication(self, fetch: Fetch) -> None:
        """Run the `replicate` policies' plans through `fetch` (the internal interface's own
        request path, proxy/replicating.py, once that interface is up); once per node."""
        if self.cache is None or self.replicator is not None or not self.worker.fetches:
            return
        self.replicator = Replicator(
            self.cache.store.engine,
            fetch,
            lambda: policies_of(self.snapshot),
            f"{self.gateway_name}:{node_name()}",
        )
        self.replicator.start()

    async def close(self) -> None:
        if self.replicator is not None:
            await self.replicator.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.replay_guard is not None:
            self.replay_guard.close()
        for signer in self.signers.values():
            await signer.aclose()
        if self.cache is not None:
            await self.cache.close()  # revalidations in flight finish first: they log and sign
        if self.messagelog is not None:
            await self.messagelog.close()
        if self.opmonitor is not None:  # last: every exchange answered so far has its record queued
            await self.opmonitor.close()
        for transport in (self._peers, self._backends, self._services):
            if transport is not None:
                await transport.aclose()

    @property
    def peers(self) -> Transport:
        """Toward other gateways: mutual TLS, each connection pinned to a registered certificate."""
        assert self._peers is not None, "runtime.start() was not called"
        return self._peers

    @property
    def backends(self) -> Transport:
        """Toward the services of the members this gateway hosts."""
        assert self._backends is not None, "runtime.start() was not called"
        return self._backends

    def _reset_peer_transport(self) -> None:
        """A peer transport whose TLS context trusts the federation's current CAs."""
        if self._peers_given:
            return
        conf = self.globalconf_source.current
        cas = tuple(conf.trusted_ca_certs()) if conf else ()
        if self._peers is not None and cas == self._peer_context_cas:
            return
        old = self._peers
        context = external_client_context(self.config.auth_tls.identity(), cas)
        self._peers = peer_transport(context, self.registered_fingerprints)
        self._peer_context_cas = cas
        if old is not None:
            asyncio.get_running_loop().create_task(old.aclose())

    async def _purge_seen_requests(self) -> None:
        """Forget replay keys whose requests are too old to be accepted by any node anyway."""
        while True:
            await asyncio.sleep(PURGE_INTERVAL_SECONDS)
            if self.replay_guard is None:
                continue
            try:
                await self.replay_guard.purge(utc_now)
            except Exception:  # the table only grows until the next round; the check still holds
                log.exception("purging expired replay keys failed")

    async def _maintain_cache(self, cache: CacheService) -> None:
        """Evict, purge entries of clients no longer registered, save the counters (gateway.cache)."""
        while True:
            await asyncio.sleep(cache.maintenance_interval_seconds)
            try:
                await cache.maintain(self.snapshot)
            except Exception:  # the next round tries again; serving never depends on it
                log.exception("cache maintenance failed")

    async def _poll_snapshot(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SNAPSHOT_POLL_SECONDS)
            try:
                self.snapshot = await loop.run_in_executor(None, self.repository.snapshot)
                self.trust_pinned_certificates()
            except Exception:  # a database hiccup must not stop the loop; the old snapshot stays
                log.exception("server configuration reload failed")

    def trust_pinned_certificates(self) -> None:
        """Make every pinned client certificate a trust anchor of the internal HTTPS context.

        Agency systems present self-signed certificates, which the handshake accepts only when
        trusted (crypto.tls.internal_server_context); one pinned while the node runs must work
        from the next handshake on. An unpinned one stays trusted by TLS until a restart, but
        the handler's fingerprint check (consumer.authenticate_client) refuses it at once.
        """
        if self.internal_tls_context is None:
            return
        new = {
            pin.sha256: pin.pem
            for subsystem in self.snapshot.subsystems.values()
            for pin in subsystem.certificates
            if pin.sha256 not in self._trusted_pins
        }
        if new:
            add_client_trust(self.internal_tls_context, new.values())
            self._trusted_pins.update(new)

    async def _poll_globalconf(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds())
            self._reload_anchor()
            try:
                await self.globalconf_source.refresh()
                self._reset_peer_transport()
                self.trust_federation_cas()
            except GlobalConfError as exc:
                log.warning("global configuration refresh failed: %s", exc)

    async def _wait_for_globalconf_cache(self) -> None:
        """A worker other than 0 opens its interfaces once worker 0 has stored a configuration
        (or after worker 0's own start-up download would have given up): it would only fault."""
        deadline = time.monotonic() + FOLLOWER_START_WAIT_SECONDS
        self._follow_globalconf_cache()
        while self.globalconf_source.current is None and time.monotonic() < deadline:
            await asyncio.sleep(FOLLOW_SECONDS / 10)
            self._follow_globalconf_cache()

    async def _follow_globalconf(self) -> None:
        """A worker other than 0: adopt what worker 0 stored in the cache file, as it changes."""
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            self._reload_anchor()
            self._follow_globalconf_cache()

    def _follow_globalconf_cache(self) -> None:
        path = self.globalconf_source.cache_path
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("global configuration cache %s not readable: %s", path, exc)
            return
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._globalconf_cache_seen:
            return
        try:
            self.globalconf_source.load_cached()
        except GlobalConfError as exc:
            log.warning("global configuration cache %s not adopted: %s", path, exc)
            return
        self._globalconf_cache_seen = seen
        if self._peers is not None:  # started: the transports follow the configuration's CAs
            self._reset_peer_transport()
        self.trust_federation_cas()

    def refresh_seconds(self) -> float:
        """The node's own interval, or the configuration's `refresh_interval_seconds` if shorter."""
        conf = self.globalconf_source.current
        interval = self.config.globalconf_refresh_seconds
        return min(interval, conf.settings.refresh_interval_seconds) if conf else interval

    def _reload_anchor(self) -> None:
        """Adopt the anchor file when its operator replaced it (docs/central.md "Rotating the signing key").

        An unreadable or malformed new anchor is logged and the one in use is kept.
        """
        path = self.config.globalconf_anchor
        try:
            data = path.read_bytes()
            if data == self._anchor_bytes:
                return
            anchor = anchor_from_json(data)
        except (OSError, GlobalConfError) as exc:
            log.warning("anchor %s not reloaded: %s", path, exc)
            return
        if self._anchor_bytes is not None:
            log.info(
                "anchor %s changed: %d configuration-signing certificate(s)", path, len(anchor.certificates)
            )
        self._anchor_bytes = data
        self.globalconf_source.anchor = anchor

    def trust_federation_cas(self) -> None:
        """Add the configuration's CAs to the handshake trust of the external and internal interfaces.

        A node may start before it has a configuration, and the registry adds CAs while it
        runs. A CA that is dropped stays in the TLS contexts until a restart; the handlers'
        checks against registered and pinned certificates refuse its holders anyway.
        """
        conf = self.globalconf_source.current
        if conf is None or self.external_tls_context is None:
            return  # the interfaces are not up yet: they take every CA when they start
        new = [ca for ca in conf.trusted_ca_certs() if fingerprint_sha256(ca) not in self._federation_cas]
        if not new:
            return
        for context in (self.external_tls_context, self.internal_tls_context):
            if context is not None:
                context.load_verify_locations(cadata=pem_bundle(new))
        self._federation_cas.update(fingerprint_sha256(ca) for ca in new)

    async def _keep_own_status(self) -> None:
        """Keep OCSP responses for this node's certificates fresh (proxy/ownstatus.py)."""
        assert self.own_status is not None
        while True:
            conf = self.globalconf_source.current
            if conf is not None:
                try:
                    self.own_status.sync(conf)
                    if self.worker.fetches:
                        await self.own_status.refresh()
                    else:
                        await asyncio.to_thread(self.own_status.reload_stored)
                except Exception:  # the loop must survive one bad round; the responses in hand stay
                    log.exception("OCSP renewal of own certificates failed")
            await asyncio.sleep(ownstatus.TICK_SECONDS)

    def own_ocsp(
        self, certificate: x509.Certificate, conf: GlobalConf, fault_code: str, stale_fault: str
    ) -> bytes | None:
        """The OCSP response this node attaches for its own `certificate`, or the fault it cannot send with.

        `stale_fault` when no response is fresh (docs/resilience.md), `fault_code` when
        the certificate itself is unusable (revoked, not from a trusted CA). None when the
        certificate's CA has no responder in the configuration.
        """
        if self.own_status is None:
            raise XRoadFault(fault_code, "the node is not started")
        try:
            return self.own_status.response_for(certificate, conf, utc_now())
        except OwnStatusUnavailable as exc:
            log.warning("cannot send: %s", exc)
            code = stale_fault if exc.stale else fault_code
            raise XRoadFault(code, f"this gateway cannot use its certificate: {exc}") from exc

    def registered_fingerprints(self, address: str) -> frozenset[str] | None:
        conf = self.globalconf_source.current
        if conf is None:
            return None
        pins = {
            fp
            for server in conf.security_servers
            if server.address == address
            for fp in server.auth_cert_sha256
        }
        return frozenset(pins) if pins else None

    @property
    def gateway_name(self) -> str:
        """This gateway's identifier text: whose message-log chain records belong to."""
        return self.config.server_id.to_text()

    def reload_snapshot(self) -> None:
        """Called by the admin API after a change so this node sees it at once."""
        self.snapshot = self.repository.snapshot()
        self.trust_pinned_certificates()

    def valid_globalconf(self, fault_code: str = faults.OUTDATED_GLOBALCONF) -> GlobalConf:
        """The current configuration, or the OutdatedGlobalConf fault (PROTOCOL.md)."""
        conf = self.globalconf_source.current
        if conf is None:
            raise XRoadFault(fault_code, "no valid global configuration is available")
        if conf.is_expired(utc_now()):
            raise XRoadFault(fault_code, f"the global configuration expired at {conf.expires_at.isoformat()}")
        return conf

    def signer_for(self, member: ClientId, fault_code: str) -> BatchSigner:
        signer = self.signers.get(member)
        if signer is None:
            raise XRoadFault(fault_code, f"this gateway holds no signing key for {member}")
        return signer

    def _cache_health(self) -> dict[str, object] | None:
        """The circuits this node has to provider services (the counters are in the cache's database)."""
        if self.cache is None:
            return None
        return {
            "circuits": {
                service: {"state": status.state.value, "last_fault": status.last_fault}
                for service, status in self.cache.breaker_states().items()
            }
        }

    def health(self) -> dict[str, object]:
        """The admin listener's detail beside the verdict (gateway.proxy.health.NodeHealth.detail)."""
        conf = self.globalconf_source.current
        now = utc_now()
        return {
            "server": self.config.server_id.to_text(),
            "worker": {"index": self.worker.index, "count": self.worker.count},
            "globalconf": {
                "valid": bool(conf and not conf.is_expired(now)),
                "version": conf.version if conf else None,
                "expires_at": conf.expires_at.isoformat() if conf else None,
                "last_error": str(self.globalconf_source.last_error)
                if self.globalconf_source.last_error
                else None,
                "security_servers": [server.id.to_text() for server in conf.security_servers] if conf else [],
                "anchor_certificates": [
                    fingerprint_sha256(cert) for cert in self.globalconf_source.anchor.certificates
                ],
            },
            "ocsp": self.own_status.health(now) if self.own_status is not None else None,
            "clock": self.clock_check.health(),
            "serverconf_version": self.snapshot.version,
            "signers": sorted(member.to_text() for member in self.signers),
            "messagelog": self.messagelog.health() if self.messagelog is not None else None,
            "cache": self._cache_health(),
            "admission": self.admission.health(),
            "monitoring": self.opmonitor.health() if self.opmonitor is not None else None,
            "time": time.time(),
        }
