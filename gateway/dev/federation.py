"""A development federation on 127.0.0.1, built through the central registry (`xgate federation up`).

`up` makes a PKI whose CA names the development OCSP responder, starts the trust services
(`xgate trust serve`: RFC 3161 TSA and OCSP responder) and the central registry (`xgate
central serve`) as processes, and registers through the registry's management API what its
administrator would: the CA with its OCSP responder, the TSA, the member class, the members
and their subsystems, the federation's settings. Each gateway then submits its own signed
registration requests (its TLS certificate, the subsystem it hosts), which the administrator
approves. Gateways take their anchor from the registry's `/anchor` and fetch its
`/globalconf` every few seconds; `up` returns once every gateway runs on a configuration that
lists every server and holds fresh OCSP responses for its own certificates.

`build` makes the same keys, databases and service registrations with a configuration signed
here instead of by a registry, and no trust services: a federation whose nodes start on their
own (tests of a single node), and whose configuration a test may re-sign
(`up(..., registry=False)`).

Convenience over security, for development only: each gateway's own subsystem is registered
in `http` client-authentication mode, so curl and zeep call the internal interface without a
client certificate. A real gateway's subsystems default to `https_cert` (a pinned TLS client
certificate); `xgate admin subsystems list` flags the development ones as unauthenticated.

Everything is generated into one directory; `DIR/federation.json` describes it for tests,
the demo and anyone evaluating xgate, and `xgate federation down --dir DIR` stops it.
`DIR/pids.json` names each process's PID, `DIR/processes.json` what that process was when it
started (`gateway.dev.processes.ProcessIdentity`): `down` signals a PID only while it still
names the process `up` started, never one the system has given the number to since.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests

from gateway.cache.settings import DEFAULT_MAINTENANCE_INTERVAL_SECONDS
from gateway.central.api_client import RegistryClient, server_path
from gateway.central.bootstrap import PublishingTimes, init_registry
from gateway.central.client import register_server, request_subsystem
from gateway.crypto.certs import certificate_to_pem, load_certificate_file
from gateway.crypto.keys import load_private_key, write_file_atomically
from gateway.dev.processes import (
    Child,
    Ports,
    ProcessIdentity,
    alive,
    spawn,
    stop_processes,
    wait_for,
    wait_http,
)
from gateway.globalconf import (
    Anchor,
    GlobalConf,
    GlobalConfSettings,
    Member,
    SecurityServerInfo,
    TrustedCa,
    anchor_from_json,
    sign_globalconf,
)
from gateway.globalconf.source import save_anchor
from gateway.ids import ClientId, SecurityServerId, ServiceId
from gateway.messagelog.service import NODE_NAME_ENV
from gateway.resources import descriptions_dir, example_service_module
from gateway.serverconf.access import AccessRight, Endpoint
from gateway.serverconf.db import migrate
from gateway.serverconf.model import ClientAuthMode, ServiceConf, ServiceDescription, ServiceKind
from gateway.serverconf.openapi import parse_openapi
from gateway.serverconf.repository import ServerConfRepository
from gateway.serverconf.wsdl import parse_wsdl
from gateway.trust.pki import (
    CaSettings,
    CertificateAuthority,
    ConfigurationSignerProfile,
    GatewayProfile,
    MemberSigningProfile,
    OcspResponderProfile,
    TsaProfile,
    init_pki,
    issue,
    load_ca,
)
from gateway.webapi import OPENAPI_PATH

INSTANCE: Final = "DEV"
CA_NAME: Final = "xgate development CA"
TSA_NAME: Final = "xgate development TSA"
MEMBER_CLASS: Final = "GOV"
# A locally signed configuration (`build`) has no registry to renew it: valid for a demo session.
GLOBALCONF_VALIDITY: Final = dt.timedelta(days=2)
START_TIMEOUT_SECONDS: Final = 60.0
UNREACHABLE_ADDRESS: Final = "127.0.0.1:1"
"""Where the standby gateway is registered: tcpmux's port, which nothing on a development machine
serves and no unprivileged process can bind, so connecting is refused at once, every time."""
APPROVAL_REASON: Final = "development federation: approved by `xgate federation up`"


@dataclass(frozen=True)
class FederationTimes:
    """How often the registry and the gateways of a development federation renew what they hold."""

    validity_seconds: int = 24 * 3600
    """Each published configuration: long enough for a demo to outlive a stopped registry."""
    regenerate_seconds: float = 30.0
    """The registry re-signs this often even when nothing changed (never over half the validity)."""
    refresh_interval_seconds: int = 2
    """Gateways fetch the configuration this often: a registration shows within seconds."""
    ocsp_freshness_seconds: int = 60
    """How old an OCSP response may be; revocations take effect within this."""
    timestamping_interval_seconds: int = 2
    """Message-log batches are timestamped this often."""
    max_timestamp_failure_seconds: float = 600.0
    """How long timestamping may fail before gateways refuse new exchanges ([messagelog])."""
    cache_maintenance_seconds: float = DEFAULT_MAINTENANCE_INTERVAL_SECONDS
    """How often gateways evict expired cache entries ([cache]); a test that shortens a policy's
    maximum age for a moment lengthens it, so the entry outlives that moment."""


DEV_TIMES: Final = FederationTimes()


@dataclass(frozen=True)
class GatewayPlan:
    name: str
    member: ClientId
    member_name: str
    subsystem: str


PLAN: Final = (
    GatewayPlan("gw-a", ClientId(INSTANCE, MEMBER_CLASS, "1001"), "Social Security Fund", "benefits-office"),
    GatewayPlan("gw-b", ClientId(INSTANCE, MEMBER_CLASS, "1002"), "Civil Registry", "population"),
    GatewayPlan("gw-c", ClientId(INSTANCE, MEMBER_CLASS, "1003"), "Benefits Agency", "benefits"),
)

SERVICES: Final = {
    "population_register": example_service_module("population_register"),
    "benefits_api": example_service_module("benefits_api"),
}


def _server_id(plan: GatewayPlan) -> SecurityServerId:
    return SecurityServerId(INSTANCE, plan.member.member_class, plan.member.member_code, plan.name)


def _subsystem(plan: GatewayPlan) -> ClientId:
    return ClientId(INSTANCE, plan.member.member_class, plan.member.member_code, plan.subsystem)


# --- processes ------------------------------------------------------------------------------


def _start(
    fed: Path,
    name: str,
    command: list[str],
    ports: Ports | None = None,
    serving: Iterable[int] = (),
    node_name: str | None = None,
) -> Child:
    """Start one process of the federation, handing it the held sockets of the ports it serves.

    `node_name`: a gateway node's name in its message-log chains (XGATE_NODE_NAME), which nodes
    sharing one database must not share."""
    listening = ports.take(serving) if ports is not None else []
    environ = {**os.environ, NODE_NAME_ENV: node_name} if node_name else None
    child = spawn(name, command, _log(fed, name), cwd=fed, listening=listening, environ=environ)
    _record_identity(fed, name, child.identity)
    return child


def _xgate(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *args]


# --- files: keys, certificates, databases, node configurations -------------------------------


def _gateway_toml(
    gw: dict[str, Any],
    fed: Path,
    location: str,
    refresh_seconds: float,
    timestamp_interval_seconds: float = 5.0,
    max_timestamp_failure_seconds: float = 600.0,
    cache_maintenance_seconds: float = DEFAULT_MAINTENANCE_INTERVAL_SECONDS,
) -> str:
    shared = gw.get("database_url")  # several nodes of one gateway: one PostgreSQL database
    serverconf_url = shared or f"sqlite:///{fed / gw['name'] / 'serverconf.sqlite'}"
    shared_line = f'database_url = "{shared}"' if shared else ""
    return f"""# Generated by `xgate federation up`: gateway {gw["server_id"]}.
[node]
server_id = "{gw["server_id"]}"
data_dir = "."
database_url = "{serverconf_url}"

[globalconf]
location = "{location}"
anchor = "{fed / "anchor.json"}"
refresh_seconds = {refresh_seconds:g}

[internal.http]
port = {gw["ports"]["internal_http"]}

[internal.https]
port = {gw["ports"]["internal_https"]}
cert = "{gw["tls_cert"]}"
key = "{gw["tls_key"]}"

[external]
port = {gw["ports"]["external"]}
cert = "{gw["auth_cert"]}"
key = "{gw["auth_key"]}"

[admin]
port = {gw["ports"]["admin"]}

[health]
# What a load balancer would probe (docs/operations.md); loopback here, any address in production.
port = {gw["ports"]["health"]}
[metrics]
enabled = true
port = {gw["ports"]["metrics"]}

[[signing_keys]]
member = "{gw["member"]}"
cert = "{gw["sign_cert"]}"
key = "{gw["sign_key"]}"

[limits]
backend_timeout_seconds = 3

[messagelog]
timestamp_interval_seconds = {timestamp_interval_seconds:g}
max_timestamp_failure_seconds = {max_timestamp_failure_seconds:g}
{shared_line}

[cache]
maintenance_interval_seconds = {cache_maintenance_seconds:g}
{shared_line}

[compatibility]
# The federation's tests read faults as xgate wrote them before X-Road 7.8's defaults.
soap_fault_status = 500
fault_code_style = "legacy"
"""


def _issue_gateway(
    fed: Path, pki_dir: Path, ca: CertificateAuthority, plan: GatewayPlan, ports: Ports
) -> dict[str, Any]:
    """Keys, certificates and (held) ports of one gateway; its files go to DIR/<name>/."""
    server = _server_id(plan)
    auth = issue(pki_dir, ca, GatewayProfile(server), out_prefix=fed / plan.name / "auth")
    tls = issue(pki_dir, ca, GatewayProfile(server), out_prefix=fed / plan.name / "internal")
    sign = issue(
        pki_dir, ca, MemberSigningProfile(plan.member, plan.member_name), out_prefix=fed / plan.name / "sign"
    )
    return {
        "name": plan.name,
        "server_id": server.to_text(),
        "member": plan.member.to_text(),
        "member_name": plan.member_name,
        "subsystem": _subsystem(plan).to_text(),
        **_node_addresses(ports),
        "auth_cert": str(auth.certificate_path),
        "auth_key": str(auth.key_path),
        "tls_cert": str(tls.certificate_path),
        "tls_key": str(tls.key_path),
        "sign_cert": str(sign.certificate_path),
        "sign_key": str(sign.key_path),
        "config": str(fed / plan.name / "gateway.toml"),
    }


def _auth_pem(gw: dict[str, Any]) -> str:
    return Path(gw["auth_cert"]).read_text(encoding="ascii")


def _service_ports(ports: Ports) -> dict[str, dict[str, Any]]:
    return {name: {"port": ports.reserve(), "module": module} for name, module in SERVICES.items()}


def _server_info(gw: dict[str, Any]) -> SecurityServerInfo:
    return SecurityServerInfo(
        SecurityServerId.from_text(gw["server_id"]),
        gw["external_address"],
        (_auth_pem(gw),),
        (ClientId.from_text(gw["subsystem"]),),
    )


def _standby_server(
    fed: Path, pki_dir: Path, ca: CertificateAuthority, gateways: list[dict[str, Any]]
) -> SecurityServerInfo:
    """A registered gateway that never runs, hosting gw-b's subsystem: a dead node to fail over from."""
    gw_b = next(gw for gw in gateways if gw["name"] == "gw-b")
    owner = ClientId.from_text(gw_b["member"])
    server = SecurityServerId(INSTANCE, owner.member_class, owner.member_code, "gw-b-standby")
    auth = issue(pki_dir, ca, GatewayProfile(server), out_prefix=fed / "gw-b-standby" / "auth")
    return SecurityServerInfo(
        server,
        UNREACHABLE_ADDRESS,
        (certificate_to_pem(auth.certificate).decode("ascii"),),
        (ClientId.from_text(gw_b["subsystem"]),),
    )


def _open_database(fed: Path, gw: dict[str, Any]) -> ServerConfRepository:
    """The gateway's server-configuration database with its own subsystem and an admin API key.

    The subsystem is in `http` mode, unauthenticated, for the demo's curl and zeep calls
    (module docstring); never a production default.
    """
    url = gw.get("database_url") or f"sqlite:///{fed / gw['name'] / 'serverconf.sqlite'}"
    migrate(url)
    repository = ServerConfRepository.from_url(url)
    repository.add_subsystem(ClientId.from_text(gw["subsystem"]), ClientAuthMode.HTTP)
    _, api_key = repository.create_api_key("federation-admin", "system_administrator")
    gw["api_key"] = api_key
    return repository


def _register(fed: Path, gateways: list[dict[str, Any]], services: dict[str, Any]) -> list[dict[str, Any]]:
    """Subsystems, services and access rights, written straight into each gateway's database."""
    by_name = {gw["name"]: gw for gw in gateways}
    consumer_a = ClientId.from_text(by_name["gw-a"]["subsystem"])
    consumer_c = ClientId.from_text(by_name["gw-c"]["subsystem"])
    registered: list[dict[str, Any]] = []
    for gw in gateways:
        repository = _open_database(fed, gw)
        subsystem = ClientId.from_text(gw["subsystem"])
        if gw["name"] == "gw-b":
            wsdl_bytes = (descriptions_dir() / "population-register.wsdl").read_bytes()
            backend = f"http://127.0.0.1:{services['population_register']['port']}/population-register"
            for operation in parse_wsdl(wsdl_bytes).operations:
                service = ServiceId(
                    INSTANCE,
                    subsystem.member_class,
                    subsystem.member_code,
                    subsystem.subsystem_code,
                    operation.service_code,
                    operation.service_version,
                )
                repository.add_service(
                    ServiceConf(
                        service,
                        ServiceKind.SOAP,
                        backend,
                        timeout_seconds=3.0,
                        description=ServiceDescription(
                            wsdl_bytes.decode("utf-8"), "wsdl/population-register.wsdl"
                        ),
                    )
                )
                for consumer in (consumer_a, consumer_c):
                    repository.grant(subsystem, AccessRight(consumer, operation.service_code, None))
                registered.append(
                    {
                        "gateway": "gw-b",
                        "kind": "soap",
                        "service": service.to_text(),
                        "wsdl": str(descriptions_dir() / "population-register.wsdl"),
                    }
                )
        if gw["name"] == "gw-c":
            spec = (descriptions_dir() / "benefits-api.yaml").read_bytes()
            description = parse_openapi(spec)
            service = ServiceId(
                INSTANCE, subsystem.member_class, subsystem.member_code, subsystem.subsystem_code, "benefits"
            )
            repository.add_service(
                ServiceConf(
                    service,
                    ServiceKind.REST,
                    f"http://127.0.0.1:{services['benefits_api']['port']}",
                    timeout_seconds=3.0,
                    description=ServiceDescription(spec.decode("utf-8"), "wsdl/benefits-api.yaml"),
                    endpoints=tuple(Endpoint(e.method, e.path_pattern) for e in description.endpoints),
                )
            )
            repository.grant(subsystem, AccessRight(consumer_a, "benefits", None))
            registered.append(
                {
                    "gateway": "gw-c",
                    "kind": "rest",
                    "service": service.to_text(),
                    "openapi": str(descriptions_dir() / "benefits-api.yaml"),
                }
            )
        repository.engine.dispose()
    return registered


# --- a federation with a locally signed configuration ---------------------------------------


def build(fed: Path, *, unreachable_standby: bool = False) -> dict[str, Any]:
    """Generate keys, certificates, a locally signed configuration and databases; start nothing.

    `unreachable_standby` registers a second gateway for gw-b's subsystem, listed before gw-b,
    at an address where nothing listens: what consumer failover (DESIGN.md step 3) is tested with.
    The ports written into the nodes' files were free when chosen; whoever starts the nodes
    binds them.
    """
    ports = Ports()
    try:
        return _build(fed, unreachable_standby, ports)
    finally:
        ports.close()


def _build(fed: Path, unreachable_standby: bool, ports: Ports) -> dict[str, Any]:
    fed.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki_dir = fed / "pki"
    ca = init_pki(pki_dir, settings=CaSettings(common_name=CA_NAME))
    now = dt.datetime.now(dt.UTC)

    # The federation's configuration-signing key; its certificate is the gateways' anchor.
    signer = issue(pki_dir, ca, ConfigurationSignerProfile(), out_prefix=fed / "globalconf-signer")
    conf_key = load_private_key(signer.key_path)
    conf_cert = signer.certificate

    gateways = [_issue_gateway(fed, pki_dir, ca, plan, ports) for plan in PLAN]
    standby = _standby_server(fed, pki_dir, ca, gateways) if unreachable_standby else None
    conf = GlobalConf(
        instance=INSTANCE,
        version=1,
        generated_at=now,
        expires_at=now + GLOBALCONF_VALIDITY,
        members=tuple(
            Member(p.member.member_class, p.member.member_code, p.member_name, (p.subsystem,)) for p in PLAN
        ),
        security_servers=(*([standby] if standby else []), *(_server_info(gw) for gw in gateways)),
        trusted_cas=(TrustedCa(CA_NAME, certificate_to_pem(ca.certificate).decode("ascii"), ()),),
        timestamping_authorities=(),
        global_groups=(),
        settings=GlobalConfSettings(),
    )
    write_file_atomically(fed / "globalconf.signed.json", sign_globalconf(conf, conf_key, conf_cert), 0o644)
    save_anchor(fed / "anchor.json", Anchor(INSTANCE, (str(fed / "globalconf.signed.json"),), (conf_cert,)))

    services = _service_ports(ports)
    for gw in gateways:
        toml = _gateway_toml(gw, fed, str(fed / "globalconf.signed.json"), 5)
        write_file_atomically(Path(gw["config"]), toml.encode(), 0o600)
    registered = _register(fed, gateways, services)
    return {
        "instance": INSTANCE,
        "dir": str(fed),
        "mode": "local",
        "standby": {"server_id": standby.id.to_text(), "external_address": standby.address}
        if standby
        else None,
        "ca_cert": str(pki_dir / "ca" / "ca.pem"),
        "globalconf": str(fed / "globalconf.signed.json"),
        "anchor": str(fed / "anchor.json"),
        "gateways": gateways,
        "services": registered,
        "backends": {name: f"http://127.0.0.1:{s['port']}" for name, s in services.items()},
        "_service_processes": services,
    }


def _up_locally(fed: Path, unreachable_standby: bool, pids: dict[str, int], ports: Ports) -> dict[str, Any]:
    description = _build(fed, unreachable_standby, ports)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    services = description.pop("_service_processes")
    children = _start_services(fed, services, pids, ports)
    for gw in description["gateways"]:
        children[gw["name"]] = _start_gateway(fed, gw, ports)
        pids[gw["name"]] = children[gw["name"]].pid
    _write_pids(fed, pids)
    for gw in description["gateways"]:
        wait_http(_started_url(gw), deadline, children[gw["name"]])
    for name, url in description["backends"].items():
        wait_http(url + "/", deadline, children[name])
    return description


def _start_services(
    fed: Path, services: dict[str, Any], pids: dict[str, int], ports: Ports
) -> dict[str, Child]:
    children = {}
    for name, service in services.items():
        command = [sys.executable, "-m", service["module"], "--port", str(service["port"])]
        children[name] = _start(fed, name, command, ports, [service["port"]])
        pids[name] = children[name].pid
    return children


def _started_url(gw: dict[str, Any]) -> str:
    """What answers once the node runs, healthy or not: its API's document on the admin listener
    (its /health answers 503 until the node can serve, which may be long after it started)."""
    return gw["admin_url"] + OPENAPI_PATH


def _gateway_command(gw: dict[str, Any]) -> list[str]:
    """A gateway node of `gw["workers"]` processes (gateway.workers); one unless set: the
    federation's processes share this machine's cores with each other and the tests."""
    return _xgate("gateway", "serve", "--config", gw["config"], "--workers", str(gw.get("workers", 1)))


def _start_gateway(fed: Path, gw: dict[str, Any], ports: Ports | None = None) -> Child:
    command = _gateway_command(gw)
    return _start(fed, gw["name"], command, ports, gw["ports"].values(), gw.get("node_name"))


def _log(fed: Path, name: str) -> Path:
    return fed / "logs" / f"{name}.log"


# --- a federation through the central registry ----------------------------------------------


TWO_NODE_GATEWAY: Final = "gw-a"
"""The gateway `up(database=...)` runs as two nodes: the Social Security Fund's, whose internal
interface its agency systems call through a load balancer (docs/deployment.md)."""


def _share_database(gateways: list[dict[str, Any]], database: str) -> None:
    """TWO_NODE_GATEWAY keeps its server configuration, message log and cache in `database`."""
    gw = next(gw for gw in gateways if gw["name"] == TWO_NODE_GATEWAY)
    gw["database_url"] = database
    gw["node_name"] = "node1"


def _add_second_node(fed: Path, gateways: list[dict[str, Any]], ports: Ports) -> None:
    """A second node of TWO_NODE_GATEWAY: the same identity, keys and database, its own ports,
    data directory (OCSP responses, archives) and node name (its own message-log chains)."""
    gw = next(gw for gw in gateways if gw["name"] == TWO_NODE_GATEWAY)
    name = f"{gw['name']}-2"
    (fed / name).mkdir(mode=0o700)
    gw["more_nodes"] = [
        {
            **{k: v for k, v in gw.items() if k != "more_nodes"},
            "name": name,
            "node_name": "node2",
            **_node_addresses(ports),
            "config": str(fed / name / "gateway.toml"),
        }
    ]


def _node_addresses(ports: Ports) -> dict[str, Any]:
    """A gateway node's ports, held for it, and the addresses federation.json gives for them."""
    names = ("internal_http", "internal_https", "external", "admin", "health", "metrics")
    held = {k: ports.reserve() for k in names}
    return {
        "ports": held,
        "internal_http_url": f"http://127.0.0.1:{held['internal_http']}",
        "internal_https_url": f"https://127.0.0.1:{held['internal_https']}",
        "external_address": f"127.0.0.1:{held['external']}",
        "admin_url": f"http://127.0.0.1:{held['admin']}",
        "health_url": f"http://127.0.0.1:{held['health']}/health",
        "metrics_url": f"http://127.0.0.1:{held['metrics']}/metrics",
    }


def _up_through_registry(
    fed: Path,
    unreachable_standby: bool,
    times: FederationTimes,
    pids: dict[str, int],
    ports: Ports,
    redundant_trust: bool = False,
    database: str | None = None,
) -> dict[str, Any]:
    """docs/central.md "The development federation", steps 1-6; each process starts as soon as
    what it needs exists, so the slow part (Python starting) overlaps the rest."""
    fed.mkdir(parents=True, exist_ok=True, mode=0o700)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    trust, ca = _init_trust(fed, ports, redundant_trust)
    pki_dir = Path(trust["pki"])
    registry = _init_registry(fed, times, ports)
    children = {
        "trust": _start(fed, "trust", _trust_command(trust), ports, [trust["port"]]),
        "registry": _start(fed, "registry", _registry_command(registry), ports, registry["ports"]),
    }
    for name, single in trust["single"].items():
        children[name] = _start(fed, name, _single_trust_command(trust, single), ports, [single["port"]])
    services = _service_ports(ports)
    children.update(_start_services(fed, services, pids, ports))
    pids.update({name: children[name].pid for name in ("trust", "registry", *trust["single"])})
    _write_pids(fed, pids)

    gateways = [_issue_gateway(fed, pki_dir, ca, plan, ports) for plan in PLAN]
    if database is not None:
        _share_database(gateways, database)
    registered = _register(fed, gateways, services)
    if database is not None:
        _add_second_node(fed, gateways, ports)
    standby = _standby_server(fed, pki_dir, ca, gateways) if unreachable_standby else None

    wait_http(registry["management_url"] + "/health", deadline, children["registry"])
    admin = RegistryClient(registry["management_url"], registry["api_key"])
    _administer(admin, ca, trust, times)
    fetch_anchor(registry["anchor_url"], fed / "anchor.json")
    every_node = nodes({"gateways": gateways})
    for gw in every_node:
        _write_registry_toml(gw, fed, registry, times)
        children[gw["name"]] = _start_gateway(fed, gw, ports)
        pids[gw["name"]] = children[gw["name"]].pid
    _write_pids(fed, pids)

    wait_http(trust["url"] + "/health", deadline, children["trust"])
    for name, single in trust["single"].items():
        wait_http(single["url"] + "/health", deadline, children[name])
    for gw in gateways:  # each asks for itself, signing with its own keys (docs/central.md)
        _register_gateway(admin, registry["distribution_url"], gw)
    if standby is not None:
        _register_standby(admin, standby)
    final = int(admin.get("/globalconf")["version"])
    for gw in every_node:
        wait_for(
            functools.partial(_runs_on, gw, final),
            deadline,
            f"{gw['name']} on configuration {final}",
            children.values(),
        )
    for name, service in services.items():
        wait_http(f"http://127.0.0.1:{service['port']}/", deadline, children[name])
    return {
        "instance": INSTANCE,
        "dir": str(fed),
        "mode": "registry",
        "standby": {"server_id": standby.id.to_text(), "external_address": standby.address}
        if standby
        else None,
        "ca_cert": str(pki_dir / "ca" / "ca.pem"),
        "globalconf": registry["globalconf_url"],
        "anchor": str(fed / "anchor.json"),
        "gateways": gateways,
        "services": registered,
        "backends": {name: f"http://127.0.0.1:{s['port']}" for name, s in services.items()},
        "registry": registry,
        "trust": trust,
        "settings": dataclasses.asdict(times),
    }


def _init_trust(
    fed: Path, ports: Ports, redundant: bool = False
) -> tuple[dict[str, Any], CertificateAuthority]:
    """The CA, naming the OCSP responder it will have, and the trust services' certificates.

    They are issued where `xgate trust serve` looks for them, so the TSA's certificate is
    known to the registry before the service runs. With `redundant`, two single-service
    processes (`--only`) come first in priority, `trust` after them (`up`'s `redundant_trust`).
    """
    port = ports.reserve()
    url = f"http://127.0.0.1:{port}"
    pki_dir = fed / "pki"
    ca = init_pki(pki_dir, settings=CaSettings(common_name=CA_NAME, ocsp_url=url + "/ocsp"))
    tsa = issue(pki_dir, ca, TsaProfile())
    ocsp = issue(pki_dir, ca, OcspResponderProfile())
    single: dict[str, dict[str, Any]] = {}
    if redundant:
        for name, kind in (("ocsp-primary", "ocsp"), ("tsa-primary", "tsa")):
            single_port = ports.reserve()
            single_url = f"http://127.0.0.1:{single_port}"
            single[name] = {
                "kind": kind,
                "port": single_port,
                "url": single_url,
                "service_url": f"{single_url}/{kind}",
            }
    primaries = {s["kind"]: s["service_url"] for s in single.values()}
    trust = {
        "url": url,
        "port": port,
        "tsa_url": url + "/tsa",
        "ocsp_url": url + "/ocsp",
        "ocsp_urls": [*([primaries["ocsp"]] if "ocsp" in primaries else []), url + "/ocsp"],
        "tsa_urls": [*([primaries["tsa"]] if "tsa" in primaries else []), url + "/tsa"],
        "single": single,
        "pki": str(pki_dir),
        "tsa_cert": str(tsa.certificate_path),
        "ocsp_cert": str(ocsp.certificate_path),
    }
    return trust, ca


def _single_trust_command(trust: dict[str, Any], single: dict[str, Any]) -> list[str]:
    return _xgate(
        "trust", "serve", "--pki", trust["pki"], "--port", str(single["port"]), "--only", single["kind"]
    )


def _write_registry_toml(
    gw: dict[str, Any], fed: Path, registry: dict[str, Any], settings: FederationTimes | dict[str, Any]
) -> None:
    """The node's file in a federation through `registry`: configuration from there, as often as it says."""
    times = settings if isinstance(settings, FederationTimes) else FederationTimes(**settings)
    toml = _gateway_toml(
        gw,
        fed,
        registry["globalconf_url"],
        times.refresh_interval_seconds,
        times.timestamping_interval_seconds,
        times.max_timestamp_failure_seconds,
        times.cache_maintenance_seconds,
    )
    write_file_atomically(Path(gw["config"]), toml.encode(), 0o600)


def _trust_command(trust: dict[str, Any]) -> list[str]:
    return _xgate("trust", "serve", "--pki", trust["pki"], "--port", str(trust["port"]))


def _registry_command(registry: dict[str, Any]) -> list[str]:
    return _xgate("central", "serve", "--config", registry["config"])


def _init_registry(fed: Path, times: FederationTimes, ports: Ports) -> dict[str, Any]:
    """`xgate central init` in DIR/registry, with its own configuration-signing CA."""
    management_port, distribution_port = ports.reserve(), ports.reserve()
    created = init_registry(
        fed / "registry",
        INSTANCE,
        management_port=management_port,
        distribution_port=distribution_port,
        times=PublishingTimes(
            times.validity_seconds, times.refresh_interval_seconds, times.regenerate_seconds
        ),
    )
    distribution_url = f"http://127.0.0.1:{distribution_port}"
    return {
        "dir": str(fed / "registry"),
        "config": str(created.config_path),
        "ports": [management_port, distribution_port],
        "management_url": f"http://127.0.0.1:{management_port}",
        "distribution_url": distribution_url,
        "globalconf_url": distribution_url + "/globalconf",
        "anchor_url": distribution_url + "/anchor",
        "api_key": created.api_key,
        "anchor_sha256": created.anchor_sha256,
    }


def _administer(
    admin: RegistryClient, ca: CertificateAuthority, trust: dict[str, Any], times: FederationTimes
) -> None:
    """What the registry's administrator registers before any gateway asks (docs/central.md)."""
    admin.put(
        "/settings",
        {
            "validity_seconds": times.validity_seconds,
            "refresh_interval_seconds": times.refresh_interval_seconds,
            "ocsp_freshness_seconds": times.ocsp_freshness_seconds,
            "timestamping_interval_seconds": times.timestamping_interval_seconds,
        },
    )
    admin.post(
        "/trusted-cas",
        {
            "name": CA_NAME,
            "certificate": certificate_to_pem(ca.certificate).decode("ascii"),
            "ocsp_responders": [{"url": url} for url in trust["ocsp_urls"]],
        },
    )
    # Registration order is priority order: a primary TSA first, then `trust`'s under TSA_NAME.
    for url in trust["tsa_urls"]:
        name = TSA_NAME if url == trust["tsa_url"] else f"{TSA_NAME} (primary)"
        admin.post(
            "/timestamping-authorities",
            {"name": name, "url": url, "certificate": Path(trust["tsa_cert"]).read_text()},
        )
    admin.post("/member-classes", {"code": MEMBER_CLASS, "description": "Government agencies"})
    for plan in PLAN:
        admin.post(
            "/members",
            {
                "member_class": plan.member.member_class,
                "member_code": plan.member.member_code,
                "name": plan.member_name,
            },
        )
        admin.post("/subsystems", {"client_id": _subsystem(plan).to_text()})


def fetch_anchor(anchor_url: str, path: Path) -> None:
    """The registry's current anchor, checked and saved where gateways read it (out of band in production)."""
    response = requests.get(anchor_url, timeout=10)
    response.raise_for_status()
    save_anchor(path, anchor_from_json(response.content))


def _register_gateway(admin: RegistryClient, registry_url: str, gw: dict[str, Any]) -> None:
    """The gateway's own requests (its TLS certificate, then its subsystem), approved by the administrator."""
    server = SecurityServerId.from_text(gw["server_id"])
    sign_cert = load_certificate_file(Path(gw["sign_cert"]))
    sign_key = load_private_key(Path(gw["sign_key"]))
    registration = register_server(
        registry_url,
        server,
        gw["external_address"],
        load_certificate_file(Path(gw["auth_cert"])),
        load_private_key(Path(gw["auth_key"])),
        sign_cert,
        sign_key,
    )
    admin.post(f"/requests/{registration.id}/approve", {"reason": APPROVAL_REASON})
    hosting = request_subsystem(  # its owner's own subsystem: one key signs as owner and as member
        registry_url,
        server,
        ClientId.from_text(gw["subsystem"]),
        sign_cert,
        sign_key,
        member_cert=sign_cert,
        member_key=sign_key,
    )
    admin.post(f"/requests/{hosting.id}/approve", {"reason": APPROVAL_REASON})
    gw["registration_requests"] = [registration.id, hosting.id]


def _register_standby(admin: RegistryClient, standby: SecurityServerInfo) -> None:
    """A gateway that never runs cannot ask: the administrator registers it directly."""
    admin.post(
        "/security-servers",
        {
            "server_id": standby.id.to_text(),
            "address": standby.address,
            "auth_certificates": list(standby.auth_certificates),
        },
    )
    for client in standby.clients:
        admin.post(
            f"/security-servers/{server_path(standby.id.to_text())}/clients", {"client_id": client.to_text()}
        )


def gateway_health(gw: dict[str, Any]) -> dict[str, Any] | None:
    """The node's /health with its details (200 healthy, 503 not yet), or None while it does not answer."""
    try:
        response = requests.get(gw["admin_url"] + "/health", timeout=2)
    except requests.RequestException:
        return None
    if response.status_code not in (200, 503):
        return None
    health: dict[str, Any] = response.json()
    return health


def _runs_on(gw: dict[str, Any], version: int) -> bool:
    """The node has adopted `version` (or later) and holds good OCSP responses for its certificates."""
    health = gateway_health(gw)
    if health is None:
        return False
    current = health["globalconf"]["version"]
    return current is not None and current >= version and bool((health.get("ocsp") or {}).get("ready"))


# --- up, down, and single processes ---------------------------------------------------------


def up(
    fed: Path,
    *,
    unreachable_standby: bool = False,
    registry: bool = True,
    times: FederationTimes = DEV_TIMES,
    redundant_trust: bool = False,
    database: str | None = None,
) -> dict[str, Any]:
    """Build the federation in `fed` and start its processes; returns federation.json's content.

    With `database` (a PostgreSQL URL, through the registry only), gw-a runs as two nodes that
    share it (TWO_NODE_GATEWAY): the second is the `more_nodes` entry of gw-a's description.

    `registry=False` is the federation of `build`: a locally signed configuration file, no
    registry and no trust services (`times` does not apply). `redundant_trust` runs a second
    OCSP responder and a second TSA, each a process of its own listed first (`ocsp-primary`,
    `tsa-primary`), with `trust` as every gateway's fallback: what failover is tested with.
    """
    if database is not None and not registry:
        raise ValueError("two nodes sharing a database run in a federation through the registry")
    if (fed / "federation.json").exists():
        raise RuntimeError(
            f"a federation already exists in {fed}; run `xgate federation down --dir {fed}` first"
        )
    pids: dict[str, int] = {}
    ports = Ports()
    try:
        if registry:
            description = _up_through_registry(
                fed, unreachable_standby, times, pids, ports, redundant_trust, database
            )
        else:
            description = _up_locally(fed, unreachable_standby, pids, ports)
    except Exception:
        _stop(fed, pids)
        (fed / "pids.json").unlink(missing_ok=True)
        (fed / PROCESSES_FILE).unlink(missing_ok=True)
        raise
    finally:
        ports.close()
    description["pids"] = pids
    _write_description(fed, description)
    return description


def _write_description(fed: Path, description: dict[str, Any]) -> None:
    write_file_atomically(fed / "federation.json", json.dumps(description, indent=2).encode(), 0o600)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def read_pids(fed: Path) -> dict[str, int]:
    """The running federation's processes by name (DIR/pids.json)."""
    pids: dict[str, int] = _read_json(fed / "pids.json")
    return pids


def _write_pids(fed: Path, pids: dict[str, int]) -> None:
    write_file_atomically(fed / "pids.json", json.dumps(pids).encode(), 0o600)


PROCESSES_FILE: Final = "processes.json"
"""Each started process's identity by name, recorded as it starts (module docstring)."""


def read_identities(fed: Path) -> dict[str, ProcessIdentity]:
    path = fed / PROCESSES_FILE
    if not path.exists():
        return {}
    return {name: ProcessIdentity.from_json(value) for name, value in _read_json(path).items()}


def _write_identities(fed: Path, identities: dict[str, ProcessIdentity]) -> None:
    content = {name: identity.to_json() for name, identity in identities.items()}
    write_file_atomically(fed / PROCESSES_FILE, json.dumps(content, indent=2).encode(), 0o600)


def _record_identity(fed: Path, name: str, identity: ProcessIdentity | None) -> None:
    identities = read_identities(fed)
    identities.pop(name, None)
    if identity is not None:  # gone already: nothing of it may be signalled later
        identities[name] = identity
    _write_identities(fed, identities)


def _stop(fed: Path, pids: dict[str, int]) -> list[str]:
    """Stop the named processes that are still the ones started here; returns the names left alone.

    A name with no recorded identity, or one recorded for another PID, is left alone too:
    nothing says the PID is ours.
    """
    identities = read_identities(fed)
    recorded = {
        name: identities[name]
        for name, pid in pids.items()
        if name in identities and identities[name].pid == pid
    }
    left_alone = stop_processes(recorded)
    return sorted([*left_alone, *(name for name in pids if name not in recorded)])


def _command(description: dict[str, Any], name: str) -> tuple[list[str], str]:
    """How `name` is started, and the URL that answers once it runs."""
    if name == "trust":
        return _trust_command(description["trust"]), description["trust"]["url"] + "/health"
    single = description.get("trust", {}).get("single", {}).get(name)
    if single is not None:
        return _single_trust_command(description["trust"], single), single["url"] + "/health"
    if name == "registry":
        registry = description["registry"]
        return _registry_command(registry), registry["management_url"] + "/health"
    for gw in nodes(description):
        if gw["name"] == name:
            return _gateway_command(gw), _started_url(gw)
    if name in SERVICES:
        url = description["backends"][name]
        port = url.rsplit(":", 1)[1]
        return [sys.executable, "-m", SERVICES[name], "--port", port], url + "/"
    raise KeyError(f"the federation has no process {name!r}")


def nodes(description: dict[str, Any]) -> list[dict[str, Any]]:
    """Every gateway node the federation runs: each gateway's, a second node's, added gateways'."""
    gateways = [*description["gateways"], *description.get("extra_gateways", [])]
    return [*gateways, *(node for gw in gateways for node in gw.get("more_nodes", []))]


def stop_process(fed: Path, name: str) -> None:
    """Stop one process of the running federation (e.g. the registry, to see gateways outlive it)."""
    pids = read_pids(fed)
    pid = pids.pop(name, None)
    if pid is not None:
        _stop(fed, {name: pid})
    _write_pids(fed, pids)
    _record_identity(fed, name, None)


def start_process(fed: Path, name: str, ports: Ports | None = None, serving: Iterable[int] = ()) -> None:
    """Start one process of the federation again (after stop_process) and wait until it answers.

    It binds its ports itself (they were released when it stopped), unless `ports` holds them.
    """
    description = _read_json(fed / "federation.json")
    pids = read_pids(fed)
    if name in pids and alive(pids[name]):
        raise RuntimeError(f"{name} is running")
    command, health_url = _command(description, name)
    node = next((gw for gw in nodes(description) if gw["name"] == name), {})
    child = _start(fed, name, command, ports, serving, node.get("node_name"))
    pids[name] = child.pid
    _write_pids(fed, pids)
    wait_http(health_url, time.monotonic() + START_TIMEOUT_SECONDS, child)


def restart_with_workers(fed: Path, name: str, workers: int) -> None:
    """Run gateway `name` as a node of `workers` processes from now on (gateway.workers)."""
    description = _read_json(fed / "federation.json")
    for gw in description["gateways"]:
        if gw["name"] == name:
            gw["workers"] = workers
    _write_description(fed, description)
    stop_process(fed, name)
    start_process(fed, name)


def add_gateway(fed: Path, name: str, member: ClientId, member_name: str, subsystem: str) -> dict[str, Any]:
    """A new gateway node for `member`, running but not registered (`xgate gateway register` is next).

    Its certificates come from the federation's CA, its configuration from the registry;
    its own subsystem is in its database. `federation down` stops it with the rest.
    """
    description = _read_json(fed / "federation.json")
    if description.get("mode") != "registry":
        raise RuntimeError("gateways join a federation through its registry")
    pki_dir = Path(description["trust"]["pki"])
    ports = Ports()
    try:
        plan = GatewayPlan(name, member, member_name, subsystem)
        gw = _issue_gateway(fed, pki_dir, load_ca(pki_dir), plan, ports)
        _open_database(fed, gw).engine.dispose()
        _write_registry_toml(gw, fed, description["registry"], description["settings"])
        description.setdefault("extra_gateways", []).append(gw)
        _write_description(fed, description)
        start_process(fed, name, ports, gw["ports"].values())
    finally:
        ports.close()
    return gw


def down(fed: Path) -> list[str]:
    """Stop every process of the federation; returns the names of those left alone because their
    recorded PID no longer names the process `up` started (it exited, and the number may be
    another process's now)."""
    pids_file = fed / "pids.json"
    left_alone: list[str] = []
    if pids_file.exists():
        left_alone = _stop(fed, read_pids(fed))
        pids_file.unlink()
    (fed / PROCESSES_FILE).unlink(missing_ok=True)
    (fed / "federation.json").unlink(missing_ok=True)
    return left_alone


# --- the interface cache's demo policies (docs/cache.md) -------------------------------------------

DEMO_PERSON: Final = "38001085718"
"""The population register's and the benefits API's example person."""


def demo_cache_policies(description: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """gw-a's cache policies for the demo, as `xgate admin cache apply` reads them: `fallback` for
    the population register's getPerson (gw-b), `replicate` for the benefits API's
    GET /benefits/{personalCode} (gw-c), fetched every five minutes for the demo's person."""
    by_name = {gw["name"]: gw for gw in description["gateways"]}
    consumer = by_name["gw-a"]["subsystem"]
    population, benefits = by_name["gw-b"]["subsystem"], by_name["gw-c"]["subsystem"]
    return {
        "population-fallback": {
            "service": f"{population}/getPerson/v1",
            "mode": "fallback",
            "max_age_seconds": 86400,
        },
        "benefits-replica": {
            "service": f"{benefits}/benefits",
            "mode": "replicate",
            "endpoint": {"method": "GET", "path": "/benefits/*"},
            "ttl_seconds": 300,
            "max_age_seconds": 86400,
            "replication": {
                "client": consumer,
                "schedule": {"interval_seconds": 300},
                "requests": [
                    {
                        "name": "benefits-of-person",
                        "method": "GET",
                        "path": "/benefits/${person}",
                        "parameters": {"person": {"list": [DEMO_PERSON]}},
                    }
                ],
            },
        },
    }


def set_demo_cache_policies(description: dict[str, Any]) -> dict[str, Any]:
    """Apply the demo's cache policies on gw-a through its management API (audited, validated)."""
    from gateway.admin.client import AdminClient

    gw_a = next(gw for gw in description["gateways"] if gw["name"] == "gw-a")
    client = AdminClient(gw_a["admin_url"], gw_a["api_key"])
    result: dict[str, Any] = client.apply_cache_policies(demo_cache_policies(description))
    return result
