"""The security officer's message-log endpoints of the management API, over real HTTP.

The log is real (tests/logsamples.py: batch-signed records, openssl timestamps). The API runs
on 127.0.0.1 with aiohttp; the audit log is read back through the repository. Containers the
API exports are checked with asice.verify_container, and live verification is shown to find
a record someone edited in the database.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from gateway.admin.api import AdminContext, make_admin_app
from gateway.admin.roles import Role
from gateway.config import MessageLogSettings
from gateway.crypto.rootsig import RootSigner
from gateway.globalconf import GlobalConf
from gateway.messagelog import tables
from gateway.messagelog.archive import ContainerTrust
from gateway.messagelog.asice import verify_container
from gateway.messagelog.headkeeper import store_head
from gateway.messagelog.heads import LogHead, sign_head
from gateway.messagelog.inspector import LogInspector
from gateway.messagelog.officer import MAX_EXPORT_PER_CALL, QueryError, SearchQuery, TrustUnavailable
from gateway.messagelog.service import MessageLog
from gateway.serverconf.repository import AuditEntry, AuditResult, ServerConfRepository
from tests.logsamples import (
    CLIENT,
    GATEWAY,
    NODE,
    OTHER_CLIENT,
    REST_REQUEST,
    SampleLog,
    build_log,
    with_cache_answers,
)
from tests.test_admin_api import SERVER, make_repository, start

LOG = "/api/v1/message-log"
ENDPOINTS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("message_log.search", f"{LOG}/records", {"client": CLIENT}),
    ("message_log.show", f"{LOG}/exchange", {"id": "soap-1"}),
    ("message_log.export", f"{LOG}/containers", {"id": "soap-1"}),
)
JOBS = f"{LOG}/verification-jobs"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleLog]:
    log = asyncio.run(build_log(tmp_path_factory.mktemp("officer")))
    yield log
    log.engine.dispose()


@dataclass
class Officer:
    """A management API over the sample log, and keys of every role."""

    base: str
    session: aiohttp.ClientSession
    repository: ServerConfRepository
    keys: dict[Role, str]
    log: SampleLog
    trust: list[ContainerTrust | None]

    async def get(
        self, path: str, params: dict[str, str] | None = None, role: Role = Role.SECURITY_OFFICER
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"X-Road-ApiKey token={self.keys[role]}"}
        async with self.session.get(self.base + path, params=params, headers=headers) as response:
            return response.status, json.loads(await response.text())

    async def post(
        self, path: str, body: dict[str, Any], role: Role = Role.SECURITY_OFFICER
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"X-Road-ApiKey token={self.keys[role]}"}
        async with self.session.post(self.base + path, json=body, headers=headers) as response:
            return response.status, json.loads(await response.text())

    async def verification(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a verification job and poll it to its end: the finished job."""
        status, job = await self.post(JOBS, body or {})
        assert status == 202, job
        while job["state"] == "running":
            await asyncio.sleep(0.02)
            status, job = await self.get(f"{JOBS}/{job['id']}")
            assert status == 200, job
        return job  # type: ignore[no-any-return]

    def actor(self, role: Role) -> str:
        key = self.repository.verify_api_key(self.keys[role])
        assert key is not None
        return f"{key.name}#{key.id}"

    def audit(self, role: Role = Role.SECURITY_OFFICER) -> list[AuditEntry]:
        """The role's audit entries, oldest first."""
        return list(reversed(self.repository.audit_entries(actor=self.actor(role), limit=1000)))


@contextlib.asynccontextmanager
async def serving(directory: Path, log: SampleLog) -> AsyncIterator[Officer]:
    """The management API of a node whose message log is `log`, trusting the log's CA and TSA."""
    directory.mkdir(parents=True, exist_ok=True)
    repository, keys = make_repository(directory)
    trust: list[ContainerTrust | None] = [log.container_trust]
    inspector = LogInspector(log.engine, GATEWAY, trust=lambda: trust[0])
    ctx = AdminContext(repository=repository, data_dir=directory, server_id=SERVER, message_log=inspector)
    runner, base = await start(make_admin_app(ctx))
    try:
        async with aiohttp.ClientSession() as session:
            yield Officer(base, session, repository, keys, log, trust)
    finally:
        await runner.cleanup()
        repository.engine.dispose()


@pytest.fixture
async def officer(tmp_path: Path, sample: SampleLog) -> AsyncIterator[Officer]:
    async with serving(tmp_path, sample) as running:
        yield running


# --- who may ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OBSERVER, Role.SERVICE_ADMINISTRATOR, Role.REGISTRATION_OFFICER])
async def test_other_roles_are_refused_and_the_refusal_is_audited(officer: Officer, role: Role) -> None:
    for _, path, params in ENDPOINTS:
        status, body = await officer.get(path, params, role=role)
        assert status == 403, (path, body)
        assert body["error"] == "forbidden"
    entries = officer.audit(role)
    assert [(e.action, e.result) for e in entries] == [(a, AuditResult.REFUSED) for a, _, _ in ENDPOINTS]
    for entry, (_, _, params) in zip(entries, ENDPOINTS, strict=True):
        assert entry.details is not None
        assert entry.details["status"] == 403
        assert entry.details["query"] == params  # what was asked for, even when refused


@pytest.mark.parametrize("role", [Role.SECURITY_OFFICER, Role.SYSTEM_ADMINISTRATOR])
async def test_security_roles_may_read_and_every_read_is_audited(officer: Officer, role: Role) -> None:
    for _, path, params in ENDPOINTS:
        status, body = await officer.get(path, params, role=role)
        assert status == 200, (path, body)
    entries = officer.audit(role)
    assert [(e.action, e.result) for e in entries] == [(a, AuditResult.OK) for a, _, _ in ENDPOINTS]
    for entry, (_, _, params) in zip(entries, ENDPOINTS, strict=True):
        assert entry.details is not None and entry.details["query"] == params


async def test_a_node_without_a_message_log_answers_404(tmp_path: Path) -> None:
    repository, keys = make_repository(tmp_path)
    runner, base = await start(make_admin_app(AdminContext(repository, tmp_path, SERVER)))
    try:
        headers = {"X-API-Key": keys[Role.SECURITY_OFFICER]}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}{LOG}/records", headers=headers) as r,
        ):
            assert r.status == 404
            assert (await r.json())["message"] == "this node keeps no message log"
        (entry,) = repository.audit_entries(limit=10)
        assert (entry.action, entry.result) == ("message_log.search", AuditResult.REFUSED)
    finally:
        await runner.cleanup()
        repository.engine.dispose()


# --- search ----------------------------------------------------------------------------------


async def test_search_filters_and_pages(officer: Officer) -> None:
    status, body = await officer.get(f"{LOG}/records")
    assert status == 200
    assert [r["seq"] for r in body["records"]] == [9, 8, 7, 6, 5, 4, 3, 2, 1]  # newest first
    assert body["next_offset"] is None

    _, body = await officer.get(f"{LOG}/records", {"client": OTHER_CLIENT})
    assert {r["message_id"] for r in body["records"]} == {"msg-soap-2"}
    assert [r["body_logged"] for r in body["records"]] == [True, False]  # response, then request
    _, body = await officer.get(f"{LOG}/records", {"outcome": "Server.ServerProxy.AccessDenied"})
    assert [(r["message_id"], r["direction"]) for r in body["records"]] == [("msg-fault-1", "response")]
    _, body = await officer.get(f"{LOG}/records", {"message_id": "msg-rest-1", "user_id": "EE38001010000"})
    assert [r["kind"] for r in body["records"]] == ["rest", "rest"]

    times = [
        dt.datetime.fromisoformat(r["logged_at"]) for r in (await officer.get(f"{LOG}/records"))[1]["records"]
    ]
    since, until = times[5], times[1]  # records 4..7: since inclusive, until exclusive
    _, body = await officer.get(f"{LOG}/records", {"since": since.isoformat(), "until": until.isoformat()})
    assert [r["seq"] for r in body["records"]] == [7, 6, 5, 4]

    _, first = await officer.get(f"{LOG}/records", {"limit": "4"})
    _, second = await officer.get(f"{LOG}/records", {"limit": "4", "offset": str(first["next_offset"])})
    _, last = await officer.get(f"{LOG}/records", {"limit": "4", "offset": str(second["next_offset"])})
    assert [r["seq"] for r in first["records"] + second["records"] + last["records"]] == list(range(9, 0, -1))
    assert last["next_offset"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"clinet": CLIENT},
        {"limit": "0"},
        {"limit": "x"},
        {"since": "yesterday"},
        {"offset": "-1"},
        {"outcome": "stale"},
    ],
    ids=["misspelt filter", "limit 0", "limit not a number", "bad time", "negative offset", "no outcome"],
)
async def test_bad_queries_are_400_and_audited(officer: Officer, params: dict[str, str]) -> None:
    status, body = await officer.get(f"{LOG}/records", params)
    assert status == 400 and body["error"] == "validation_error", body
    (entry,) = officer.audit()
    assert entry.result is AuditResult.REFUSED and entry.details is not None
    assert entry.details["query"] == params


async def test_cache_dot_star_finds_every_answer_served_from_the_cache(
    tmp_path: Path, sample: SampleLog
) -> None:
    cache_log = await with_cache_answers(sample, tmp_path / "log")
    try:
        async with serving(tmp_path / "api", cache_log) as officer:
            _, served = await officer.get(f"{LOG}/records", {"outcome": "cache.*"})
            assert [(r["message_id"], r["outcome"], r["fault_detail"]) for r in served["records"]] == [
                ("msg-cache-2", "cache.hit", f"{NODE}:5"),
                ("msg-cache-1", "cache.stale", f"{NODE}:5"),
            ]
            _, stale = await officer.get(f"{LOG}/records", {"outcome": "cache.stale"})
            assert [r["seq"] for r in stale["records"]] == [11]
            _, ok = await officer.get(f"{LOG}/records", {"outcome": "ok"})
            assert {r["outcome"] for r in ok["records"]} == {"ok"} and len(ok["records"]) == 10

            status, refused = await officer.get(f"{LOG}/records", {"outcome": "cache.miss"})
            assert status == 400, refused
            for choice in ("ok", "cache.hit", "cache.stale", "cache.*", "a fault code"):
                assert choice in refused["message"], refused
    finally:
        cache_log.engine.dispose()


@pytest.mark.parametrize(
    "outcome",
    [
        "ok",
        "cache.hit",
        "cache.*",
        "Server.ServerProxy.AccessDenied",
        "server.server_proxy.access_denied",
        "Client.*",
    ],
)
def test_outcomes_the_log_records_and_their_prefixes_are_accepted(outcome: str) -> None:
    assert SearchQuery(outcome=outcome).outcome == outcome


@pytest.mark.parametrize(
    "outcome", ["stale", "OK", "cache.miss", "cache", "Server", "*", "Server.*.x", "Client.Foo*"]
)
def test_an_outcome_the_log_never_records_is_refused_with_the_choices(outcome: str) -> None:
    with pytest.raises(QueryError, match=r"use ok; cache\.hit; cache\.stale; cache\.\*; a fault code"):
        SearchQuery(outcome=outcome)


def test_search_query_round_trips_through_url_parameters() -> None:
    since = dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)
    query = SearchQuery(client=CLIENT, since=since, outcome="ok", limit=7, offset=14)
    assert SearchQuery.from_params(query.to_params()) == query
    assert SearchQuery.from_params({"since": "2026-11-27T10:00:00"}).since == since  # no zone: UTC
    with pytest.raises(QueryError, match="since must be before until"):
        SearchQuery(since=since, until=since)


# --- show ------------------------------------------------------------------------------------


async def test_show_gives_request_and_response_verified(officer: Officer) -> None:
    status, body = await officer.get(f"{LOG}/exchange", {"id": "rest-1"})
    assert status == 200
    (exchange,) = body["exchanges"]
    request, response = exchange["request"], exchange["response"]
    assert (request["seq"], response["seq"]) == (2, 6)
    assert request["rest_head"]["method"] == "POST" and request["rest_head"]["query"] == "source=register"
    assert ["X-Road-UserId", "EE38001010000"] in request["rest_head"]["headers"]
    assert response["rest_head"]["status"] == 201
    assert request["body"] == {
        "state": "logged",
        "size": len(REST_REQUEST.body),
        "preview": REST_REQUEST.body.decode(),
        "truncated": False,
    }
    for record, member in ((request, "CN=1001"), (response, "CN=2222")):  # the client's, the provider's
        verification = record["verification"]
        assert verification["valid"] and verification["problem"] is None
        assert verification["signature"].startswith("signed by ") and member in verification["signature"]
        assert verification["timestamp"].startswith("stamped at ")
        assert "linked to record" in verification["chain"]

    (entry,) = officer.audit()
    assert (entry.action, entry.target) == ("message_log.show", "rest-1")


async def test_show_by_message_id_with_a_fault_and_a_body_not_logged(officer: Officer) -> None:
    _, body = await officer.get(f"{LOG}/exchange", {"id": "msg-fault-1"})
    (exchange,) = body["exchanges"]
    assert exchange["exchange_id"] == "fault-1"
    fault = exchange["response"]
    assert fault["outcome"] == "Server.ServerProxy.AccessDenied" and fault["fault_detail"] == "f-1"
    assert fault["verification"]["valid"]
    assert fault["verification"]["signature"] == "none: a fault the gateway logged unsigned"

    _, body = await officer.get(f"{LOG}/exchange", {"id": "soap-2"})
    request = body["exchanges"][0]["request"]
    assert request["body"]["state"] == "not_logged" and request["message_sha256"]
    assert request["verification"]["valid"]

    _, body = await officer.get(f"{LOG}/exchange", {"id": "late-1"})
    late = body["exchanges"][0]
    assert late["response"] is None
    assert late["request"]["verification"]["timestamp"] == "not timestamped yet"


async def test_show_of_an_unknown_id_is_404_and_audited(officer: Officer) -> None:
    status, _ = await officer.get(f"{LOG}/exchange", {"id": "no-such-thing"})
    assert status == 404
    assert (await officer.get(f"{LOG}/exchange", {}))[0] == 400
    assert [(e.result, e.details and e.details["status"]) for e in officer.audit()] == [
        (AuditResult.REFUSED, 404),
        (AuditResult.REFUSED, 400),
    ]


# --- export ----------------------------------------------------------------------------------


async def test_exported_containers_verify(officer: Officer) -> None:
    status, body = await officer.get(f"{LOG}/containers", {"id": "soap-1"})
    assert status == 200 and body["failures"] == []
    assert [(c["seq"], c["direction"]) for c in body["containers"]] == [(1, "request"), (5, "response")]
    trust = officer.log.container_trust
    for item in body["containers"]:
        report = verify_container(
            base64.b64decode(item["data"]),
            trusted_cas=trust.trusted_cas,
            trusted_tsa_certs=trust.trusted_tsa_certs,
        )
        assert report.valid, report.problems
        assert report.record is not None and report.record["message_id"] == "msg-soap-1"
    (entry,) = officer.audit()
    assert entry.details is not None
    assert entry.details["containers"] == [c["name"] for c in body["containers"]]


async def test_export_by_query_pages_and_needs_a_filter(officer: Officer) -> None:
    status, body = await officer.get(f"{LOG}/containers", {"client": CLIENT, "limit": "3"})
    assert status == 200
    assert [c["seq"] for c in body["containers"]] == [9, 8, 6]
    assert body["next_offset"] == 3
    assert (await officer.get(f"{LOG}/containers"))[0] == 400  # the whole log is not one request
    limit = {"client": CLIENT, "limit": str(MAX_EXPORT_PER_CALL + 1)}
    assert (await officer.get(f"{LOG}/containers", limit))[0] == 400


# --- live verification -----------------------------------------------------------------------


async def test_live_verification_is_a_job_that_finds_an_edited_record(
    officer: Officer, tmp_path: Path
) -> None:
    job = await officer.verification({"node": NODE})
    assert (job["state"], job["valid"], job["problems"], job["problem_count"]) == ("done", True, [], 0)
    assert job["records_verified"] == job["records_total"] == 9
    (chain,) = job["result"]["chains"]
    assert (chain["checked"], chain["tokens_verified"], chain["unstamped"]) == (9, 1, 1)
    assert (await officer.verification({"node": "elsewhere"}))["result"]["chains"] == []
    (started, _) = officer.audit()
    assert started.action == "message_log.verify" and started.details is not None
    assert started.details["started"] is True and started.details["node"] == NODE

    edited = await build_log(tmp_path / "edited", officer.log.trust)
    records = tables.records
    with edited.engine.begin() as connection:
        connection.execute(sa.update(records).where(records.c.seq == 3).values(user_id="EE49002020000"))
    async with serving(tmp_path / "api", edited) as api:
        job = await api.verification()
        assert job["state"] == "done" and job["valid"] is False
        assert job["result"]["chains"][0]["first_bad"] == {
            "seq": 3,
            "problem": "modified",
            "reason": "the record's content does not match its record_hash",
        }
        assert job["problem_count"] == 1 and "record 3: modified" in job["problems"][0]
        _, shown = await api.get(f"{LOG}/exchange", {"id": "soap-2"})
        request = shown["exchanges"][0]["request"]
        assert request["verification"]["content"].startswith("FAILED (modified)")
        assert request["verification"]["signature"] == "not checked"
    edited.engine.dispose()


async def test_verification_goes_on_from_where_it_reached_unless_full(
    officer: Officer, tmp_path: Path
) -> None:
    log = await build_log(tmp_path / "log", officer.log.trust)
    async with serving(tmp_path / "api", log) as api:
        first = (await api.verification())["result"]["chains"][0]
        assert (first["first_seq"], first["checked"]) == (1, 9)
        again = (await api.verification())["result"]["chains"][0]
        assert (again["first_seq"], again["checked"]) == (9, 1)  # record 9 is not stamped yet: checked again
        # An edit behind the point reached shows only to a full verification.
        with log.engine.begin() as connection:
            records = tables.records
            connection.execute(sa.update(records).where(records.c.seq == 2).values(user_id="EE49002020000"))
        assert (await api.verification())["valid"] is True
        full = await api.verification({"full": True})
        assert full["valid"] is False and full["result"]["chains"][0]["first_bad"]["seq"] == 2
    log.engine.dispose()


async def test_a_job_checks_the_newest_signed_head_the_database_keeps(
    officer: Officer, tmp_path: Path
) -> None:
    log = await build_log(tmp_path / "log", officer.log.trust)
    trust = log.trust
    beyond = LogHead(GATEWAY, NODE, 12, bytes(32), dt.datetime.now(dt.UTC))
    store_head(log.engine, sign_head(beyond, RootSigner(trust.signer_key, trust.signer_cert)))
    async with serving(tmp_path / "api", log) as api:
        job = await api.verification({"full": True})
        assert job["valid"] is False
        bad = job["result"]["chains"][0]["first_bad"]
        assert (bad["seq"], bad["problem"]) == (10, "truncated")
        assert "records 10 to 12 are missing" in bad["reason"]
        # A head the owner did not sign is a problem of its own, not a truncation.
        forged = LogHead(GATEWAY, NODE, 20, bytes(32), dt.datetime.now(dt.UTC))
        store_head(log.engine, sign_head(forged, RootSigner(trust.provider_key, trust.provider_cert)))
        job = await api.verification()
        assert job["valid"] is False and job["result"]["chains"][0]["first_bad"] is None
        assert job["problems"] == [
            f"{GATEWAY} node {NODE}: the newest stored head: the head is not signed by the owner of {GATEWAY}"
        ]
    log.engine.dispose()


async def test_verification_jobs_refuse_other_roles_and_unknown_ids(officer: Officer) -> None:
    status, body = await officer.post(JOBS, {}, role=Role.OBSERVER)
    assert status == 403 and body["error"] == "forbidden"
    assert (await officer.get(f"{JOBS}/0123abcd"))[0] == 404
    assert (await officer.get(f"{JOBS}/not-an-id"))[0] == 400
    assert (await officer.post(JOBS, {"full": "sometimes"}))[0] == 400


async def test_live_verification_without_trust_is_503(officer: Officer) -> None:
    officer.trust[0] = None  # the node has no global configuration yet
    status, body = await officer.post(JOBS, {})
    assert status == 503 and body["error"] == "unavailable"
    _, body = await officer.get(f"{LOG}/exchange", {"id": "soap-1"})
    assert body["verified_with_trust"] is False
    assert (
        "signature not checked (no trust anchors given)"
        in body["exchanges"][0]["request"]["verification"]["signature"]
    )
    assert [e.result for e in officer.audit()] == [AuditResult.ERROR, AuditResult.OK]


def test_a_nodes_inspector_trusts_its_current_global_configuration(sample: SampleLog) -> None:
    current: list[GlobalConf | None] = [None]
    node_log = MessageLog(
        MessageLogSettings(sample.url), gateway=GATEWAY, node=NODE, globalconf=lambda: current[0]
    )
    try:
        inspector = LogInspector.of_node(node_log, lambda: current[0])
        assert inspector.show("soap-1")["verified_with_trust"] is False
        with pytest.raises(TrustUnavailable):
            inspector.verify()
        current[0] = sample.globalconf()  # the node downloads one
        assert inspector.verify()["valid"]
        request = inspector.show("soap-1")["exchanges"][0]["request"]
        assert request["verification"]["timestamp"].startswith("stamped at")
    finally:
        node_log.engine.dispose()
