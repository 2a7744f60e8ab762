"""A gateway node of two worker processes (gateway.workers), as `xgate gateway serve --workers 2`
runs it in a development federation: both workers answer on the same sockets, each writes its
own verifiable message-log chain, worker 1 serves on the configuration and OCSP responses worker
0 fetched (the consumer's node signs with them, the provider's node trusts the federation's CAs
with them), and SIGTERM to the parent drains both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.config import load_config
from gateway.dev import federation
from gateway.dev.processes import alive
from gateway.messagelog.service import node_name
from gateway.messagelog.tables import records
from gateway.workers import FAILED_START_SECONDS, WorkerRole, with_role
from tests.conftest import (
    GET_PERSON,
    GLOBALCONF_WAIT_SECONDS,
    KNOWN_PERSON,
    Federation,
    get_person_body,
    post_soap,
    running_federation,
    soap_request,
    wait_until,
)

NODES = ("gw-a", "gw-b")
"""The consumer's node (internal HTTP) and the provider's (external mutual TLS): both two workers."""
CLIENTS = 4
REQUESTS_PER_CLIENT = 10
STOP_SECONDS = 20.0


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def call(fed: Federation, message_id: str) -> tuple[int, str]:
    """getPerson through gw-a on a new connection each time, so the kernel picks the worker;
    the status, and the answer's text when it is not 200 (the fault says what went wrong)."""
    body = soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), message_id=message_id)
    answer = post_soap(fed.internal_url("gw-a"), body)
    return answer.status_code, "" if answer.status_code == 200 else answer.text[:600]


def logged_by_chain(fed: Federation, name: str) -> dict[str, set[str]]:
    engine = sa.create_engine(f"sqlite:///{fed.dir / name / 'messagelog.sqlite'}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(records.c.node, records.c.message_id)).all()
    finally:
        engine.dispose()
    chains: dict[str, set[str]] = {}
    for node, message_id in rows:
        chains.setdefault(node, set()).add(message_id)
    return chains


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with running_federation(tmp_path_factory.mktemp("workers")) as running:
        running.wait_ready()
        for name in NODES:
            federation.restart_with_workers(running.dir, name, 2)
            wait_until(
                lambda n=name: running.health(n)["worker"]["count"] == 2, 30, f"{name} with two workers"
            )
        running.wait_ready()
        yield running


def test_a_worker_knows_its_chain_and_archive_directory(fed: Federation) -> None:
    alone, second = WorkerRole(), WorkerRole(1, 2)
    assert alone.chain_node("n1") == "n1" and second.chain_node("n1") == "n1/w1"
    assert alone.fetches and not second.fetches
    assert WorkerRole.from_env({"XGATE_WORKER": second.to_env()}) == second
    assert WorkerRole.from_env({"XGATE_WORKER": "2/2"}) == alone  # nonsense: a node of one
    config = load_config(Path(fed.gateway("gw-b")["config"]))
    assert with_role(config, alone) is config
    assert config.messagelog is not None and config.messagelog.archive_dir is not None
    settings = with_role(config, second).messagelog
    assert settings is not None and settings.archive_dir == config.messagelog.archive_dir / "w1"


def test_two_workers_serve_log_their_own_chains_restart_and_drain(fed: Federation) -> None:
    parents = [federation.read_pids(fed.dir)[name] for name in NODES]
    workers = [child for parent in parents for child in children(parent)]
    assert len(workers) == 4

    ids = [f"workers-{uuid.uuid4()}" for _ in range(CLIENTS * REQUESTS_PER_CLIENT)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(lambda message_id: call(fed, message_id), ids))
    assert statuses == [(200, "")] * len(ids)

    node = node_name()
    for name in NODES:
        # Both workers answered, each in its own chain, and every exchange is in one of them.
        chains = logged_by_chain(fed, name)
        assert {f"{node}/w0", f"{node}/w1"} == set(chains), (name, chains.keys())
        assert all(chains[f"{node}/w{i}"] & set(ids) for i in (0, 1)), name
        assert set(ids) <= chains[f"{node}/w0"] | chains[f"{node}/w1"], name

    # A worker killed outright is started again by its parent, and its chain goes on.
    consumer, provider = parents
    killed = children(consumer)[1]
    age = time.time() - os.stat(f"/proc/{killed}").st_ctime
    time.sleep(max(0.0, FAILED_START_SECONDS + 1 - age))  # younger, its death would stop the node
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: killed not in children(consumer) and len(children(consumer)) == 2, 30, "a restart")
    more = [f"workers-{uuid.uuid4()}" for _ in range(CLIENTS * REQUESTS_PER_CLIENT)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        assert list(pool.map(lambda message_id: call(fed, message_id), more)) == [(200, "")] * len(more)
    assert set(more) <= set().union(*logged_by_chain(fed, "gw-a").values())
    workers = [*workers, *children(consumer)]

    # The provider's parent killed outright: its workers notice and drain rather than serve alone.
    provider_workers = children(provider)
    os.kill(provider, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in [provider, *provider_workers]), STOP_SECONDS, "gw-b")

    # SIGTERM to the consumer's parent: its workers drain and exit, then the parent.
    os.kill(consumer, signal.SIGTERM)
    wait_until(lambda: not any(alive(pid) for pid in [consumer, *workers]), STOP_SECONDS, "gw-a to stop")

    # Every chain verifies offline, records signed and timestamped (the shutdown stamps the rest).
    trust = fed.description["trust"]
    for name in NODES:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "gateway.cli", "log"),
                *("--database", str(fed.dir / name / "messagelog.sqlite"), "verify"),
                *("--ca", fed.ca_cert, "--tsa-cert", trust["tsa_cert"]),
            ],
            capture_output=True,
            text=True,
            timeout=GLOBALCONF_WAIT_SECONDS,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{node}/w1" in result.stdout, result.stdout
