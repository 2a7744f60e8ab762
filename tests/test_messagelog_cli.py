"""`xgate log` on a real log: search, show, export and verify, offline and through a node's API.

The log is tests/logsamples.py's: batch-signed records built by the proxy's own record code,
stamped by `openssl ts -reply`. Commands run in click's CliRunner, on the database directly
(an auditor's copy) or against the management API served on 127.0.0.1 from a thread. Every
verification is also made to fail: an altered container, an edited database, a missing archive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway.admin.api import AdminContext, make_admin_app
from gateway.admin.roles import Role
from gateway.crypto.batchsigner import BatchSigner
from gateway.crypto.keys import KeyAlgorithm, generate_key
from gateway.globalconf import Anchor, anchor_to_json, sign_globalconf
from gateway.messagelog import cli as log_cli
from gateway.messagelog import tables
from gateway.messagelog.archive import Archiver
from gateway.messagelog.asice import REST_REQUEST as REST_REQUEST_FILE
from gateway.messagelog.asice import LoggedMessage, build_container, verify_container
from gateway.messagelog.cli import cli
from gateway.messagelog.db import create_engine, migrate
from gateway.messagelog.inspector import LogInspector
from gateway.messagelog.record import GENESIS_HASH, Direction, MessageKind
from gateway.messagelog.store import ChainArchive, MessageLogWriter, get_exchange
from gateway.messagelog.verify import Problem
from gateway.messagelog.verify_db import verify_log
from gateway.protocol.transport import REST_BODY_CONTENT_TYPE, rest_request_head, rest_response_head
from gateway.serverconf.repository import AuditResult
from gateway.trust.pki import (
    CaSettings,
    CertificateAuthority,
    ConfigurationSignerProfile,
    build_ca_certificate,
    issue_certificate,
)
from tests.logsamples import (
    CLIENT,
    GATEWAY,
    NODE,
    OTHER_CLIENT,
    REST_REQUEST,
    REST_RESPONSE,
    SampleLog,
    build_log,
    ids,
    signed,
    with_cache_answers,
)
from tests.test_admin_api import SERVER, make_repository
from tests.test_admin_cli import ServerThread


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleLog]:
    log = asyncio.run(build_log(tmp_path_factory.mktemp("log-cli")))
    yield log
    log.engine.dispose()


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def offline(log: SampleLog, *args: str) -> Result:
    """A command on the log's database, as an auditor with a copy runs it."""
    return run("--database", log.url, "--gateway", GATEWAY, *args)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


# --- search ----------------------------------------------------------------------------------


def test_search_prints_a_table_and_json_pages(sample: SampleLog) -> None:
    table = ok(offline(sample, "search", "--client", OTHER_CLIENT))
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["LOGGED", "AT", "NODE", "SEQ"]
    assert [line.split()[2] for line in lines[1:]] == ["7", "3"]
    assert all("msg-soap-2" in line for line in lines[1:])

    first = json.loads(ok(offline(sample, "search", "--limit", "5", "--json")))
    assert [r["seq"] for r in first["records"]] == [9, 8, 7, 6, 5] and first["next_offset"] == 5
    rest = json.loads(ok(offline(sample, "search", "--limit", "5", "--page", first["next_page"], "--json")))
    assert [r["seq"] for r in rest["records"]] == [4, 3, 2, 1] and rest["next_page"] is None
    paged = offline(sample, "search", "--limit", "5")
    assert f"next page: --page {first['next_page']}" in paged.stderr
    assert "next page" not in paged.stdout

    faults = json.loads(
        ok(offline(sample, "search", "--outcome", "Server.ServerProxy.AccessDenied", "--json"))
    )
    assert [r["message_id"] for r in faults["records"]] == ["msg-fault-1"]
    later = dt.datetime.fromisoformat(first["records"][0]["logged_at"])  # record 9's time
    since = json.loads(ok(offline(sample, "search", "--since", later.isoformat(), "--json")))
    assert [r["seq"] for r in since["records"]] == [9]
    assert "(no records)" in ok(offline(sample, "search", "--user-id", "nobody"))
    assert ok(run("--database", sample.url, "--gateway", "DEV/GOV/9/other", "search")) == "(no records)\n"


def test_search_finds_every_answer_served_from_the_cache_offline_and_through_the_api(
    sample: SampleLog, tmp_path: Path
) -> None:
    cache_log = asyncio.run(with_cache_answers(sample, tmp_path / "log"))
    repository, keys = make_repository(tmp_path)
    inspector = LogInspector(cache_log.engine, GATEWAY, trust=lambda: cache_log.container_trust)
    ctx = AdminContext(repository=repository, data_dir=tmp_path, server_id=SERVER, message_log=inspector)
    try:
        with ServerThread(make_admin_app(ctx)) as server:
            api_env = {"XGATE_ADMIN_URL": server.url, "XGATE_API_KEY": keys[Role.SECURITY_OFFICER]}
            served = json.loads(ok(offline(cache_log, "search", "--outcome", "cache.*", "--json")))
            assert [(r["message_id"], r["outcome"]) for r in served["records"]] == [
                ("msg-cache-2", "cache.hit"),
                ("msg-cache-1", "cache.stale"),
            ]
            assert json.loads(ok(run("search", "--outcome", "cache.*", "--json", env=api_env))) == served
            table = ok(offline(cache_log, "search", "--outcome", "cache.stale"))
            assert [line.split()[-1] for line in table.splitlines()[1:]] == ["cache.stale"]

            for refused in (
                offline(cache_log, "search", "--outcome", "stale"),
                run("search", "--outcome", "cache.hits", env=api_env),
            ):
                assert refused.exit_code == 2, refused.output
                assert "use ok; cache.hit; cache.stale; cache.*; a fault code" in refused.output
    finally:
        cache_log.engine.dispose()
        repository.engine.dispose()


def test_search_refuses_bad_times(sample: SampleLog) -> None:
    result = offline(sample, "search", "--since", "last tuesday")
    assert result.exit_code == 2 and "since: 'last tuesday' is not a time" in result.output
    assert "2h" in result.output  # the message says what is read


def test_search_takes_relative_times(sample: SampleLog) -> None:
    """The sample was logged moments ago: all of it is within the last hour, none before it."""
    everything = json.loads(ok(offline(sample, "search", "--json")))["records"]
    recent = json.loads(ok(offline(sample, "search", "--since", "1h", "--json")))["records"]
    assert everything and recent == everything
    assert json.loads(ok(offline(sample, "search", "--until", "1h ago", "--json")))["records"] == []


# --- show ------------------------------------------------------------------------------------


def test_show_puts_request_and_response_side_by_side_verified(sample: SampleLog) -> None:
    text = ok(offline(sample, "show", "rest-1", *sample.trust_options()))
    lines = text.splitlines()
    assert lines[0] == f"exchange rest-1 (consumer side of {GATEWAY})"
    assert lines[1].split() == ["REQUEST", "RESPONSE"]
    assert next(line for line in lines if line.startswith("seq")).split() == ["seq", "2", "6"]
    assert next(line for line in lines if line.startswith("verdict")).split() == ["verdict", "VALID", "VALID"]
    assert "signed by 2.5.4.5=DEV/GOV/1001" in text and "stamped at " in text
    assert "POST /r1/DEV/COM/2222/crm/persons?source=register" in lines
    assert "X-Road-UserId: EE38001010000" in lines
    assert "status 201" in lines and '{"id": 42}' in lines

    answer = json.loads(ok(offline(sample, "show", "msg-soap-2", "--json", *sample.trust_options())))
    request = answer["exchanges"][0]["request"]
    assert request["body"]["state"] == "not_logged" and request["verification"]["valid"]
    assert "(body not logged" in ok(offline(sample, "show", "soap-2"))


def test_show_without_trust_anchors_says_what_it_did_not_check(sample: SampleLog) -> None:
    text = ok(offline(sample, "show", "soap-1"))
    assert "signature not checked (no trust anchors given)" in " ".join(text.split())
    assert "(no trust anchors: signatures and timestamp tokens were not checked)" in text
    assert "VALID" not in text
    result = offline(sample, "show", "no-such-exchange")
    assert result.exit_code == 1 and "no record of 'no-such-exchange'" in result.output


# --- export and verify containers ------------------------------------------------------------


def test_exported_containers_verify_and_an_altered_one_does_not(sample: SampleLog, tmp_path: Path) -> None:
    out = tmp_path / "evidence"
    table = ok(offline(sample, "export", "soap-1", "--out", str(out)))
    files = sorted(out.iterdir())
    assert [path.name[:12] for path in files] == ["000000000001", "000000000005"]
    assert all(str(path) in table for path in files)

    for path in files:
        text = ok(run("verify", str(path), *sample.trust_options()))
        assert text.startswith(f"{path.name}: valid")
        assert "'msg-soap-1' of DEV/GOV/1001/benefits" in text

    altered = tmp_path / "altered.asice"
    altered.write_bytes(
        _replace_in_container(files[0].read_bytes(), "message.xml", b"38001010000", b"49002020000")
    )
    result = run("verify", str(altered), *sample.trust_options())
    assert result.exit_code == 1
    assert "altered.asice: INVALID" in result.stdout
    assert result.stderr.startswith("first problem: data files: message.xml does not match its digest")


def _replace_in_container(data: bytes, name: str, old: bytes, new: bytes) -> bytes:
    """The container with one file edited, rezipped as ASiC-E wants (mimetype first, stored)."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        files = {info.filename: source.read(info) for info in source.infolist()}
    assert old in files[name]
    files[name] = files[name].replace(old, new)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for entry, content in files.items():
            method = zipfile.ZIP_STORED if entry == "mimetype" else zipfile.ZIP_DEFLATED
            target.writestr(entry, content, method)
    return buffer.getvalue()


def test_export_by_query_and_its_refusals(sample: SampleLog, tmp_path: Path) -> None:
    out = tmp_path / "by-client"
    answer = json.loads(ok(offline(sample, "export", "--client", OTHER_CLIENT, "--out", str(out), "--json")))
    assert [(row["seq"], row["direction"]) for row in answer["written"]] == [(7, "response"), (3, "request")]
    assert len(list(out.iterdir())) == 2 and answer["failures"] == []
    late = offline(sample, "export", "late-1", "--out", str(tmp_path / "late"))
    assert late.exit_code == 0 and "is not timestamped yet" in late.stderr

    again = offline(sample, "export", "--client", OTHER_CLIENT, "--out", str(out))
    assert again.exit_code == 1 and "exists: export into an empty directory" in again.output
    neither = offline(sample, "export", "--out", str(tmp_path / "x"))
    assert neither.exit_code == 2 and "an ID, or search filters" in neither.output
    both = offline(sample, "export", "soap-1", "--client", CLIENT, "--out", str(tmp_path / "y"))
    assert both.exit_code == 2


def test_verify_needs_trust_anchors(sample: SampleLog, tmp_path: Path) -> None:
    container = tmp_path / "c.asice"
    container.write_bytes(b"not a container")
    result = run("verify", str(container))
    assert result.exit_code == 2 and "give --ca and --tsa-cert" in result.output
    result = run("verify", str(container), *sample.trust_options())
    assert result.exit_code == 1 and "first problem: zip: not a zip file" in result.stderr


# --- the REST head, logged and proved --------------------------------------------------------


async def test_a_rest_exchange_is_logged_head_and_body_and_proves_both(
    sample: SampleLog, tmp_path: Path
) -> None:
    (stored_request, stored_response) = get_exchange(sample.engine, "rest-1")
    request, response = stored_request.record, stored_response.record
    assert (request.message, request.rest_head) == (REST_REQUEST.body, rest_request_head(REST_REQUEST))
    assert (response.message, response.rest_head) == (REST_RESPONSE.body, rest_response_head(REST_RESPONSE))
    assert request.content_type == REST_BODY_CONTENT_TYPE
    assert request.content_fields()["rest_head_sha256"] is not None

    report = verify_log(
        sample.engine, GATEWAY, NODE, trusted_cas=[sample.trust.ca], verify_token=sample.trust.verify_token()
    )
    assert report.ok and report.checked == 9

    containers, failures, _ = LogInspector(sample.engine, GATEWAY).export(ident="rest-1")
    assert failures == []
    with zipfile.ZipFile(io.BytesIO(containers[0].data)) as archive:
        assert archive.read(REST_REQUEST_FILE) == request.rest_head
        assert archive.read("message.bin") == REST_REQUEST.body
    trust = sample.container_trust
    for container in containers:
        checked = verify_container(
            container.data, trusted_cas=trust.trusted_cas, trusted_tsa_certs=trust.trusted_tsa_certs
        )
        assert checked.valid, checked.problems


async def test_a_rest_head_the_signature_does_not_cover_is_found(sample: SampleLog) -> None:
    """A REST record whose head is not the signed one: the chain is intact, the manifest is not."""
    url = f"sqlite:///{sample.directory / 'rest-head.db'}"
    migrate(url)
    engine = create_engine(url)
    signer = BatchSigner(sample.trust.signer_key, sample.trust.signer_cert)
    (record,) = await signed(signer, [(ids("r", "m", MessageKind.REST), Direction.REQUEST, REST_REQUEST)])
    await signer.aclose()
    forged = dataclasses.replace(record, rest_head=b'{"method":"DELETE"}')
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=NODE)
    await writer.append(forged)
    await writer.aclose()
    report = verify_log(engine, GATEWAY, NODE, trusted_cas=[sample.trust.ca])
    assert report.first_bad is not None and report.first_bad.problem is Problem.MANIFEST
    assert "REST head" in report.first_bad.reason
    with pytest.raises(ValueError, match="rest-request head does not have the digest"):
        build_container(LoggedMessage(forged, GENESIS_HASH))
    engine.dispose()


# --- verify the live log, archives, and trust from a global configuration --------------------


async def test_verify_the_database_and_an_edited_one(sample: SampleLog, tmp_path: Path) -> None:
    text = ok(offline(sample, "verify", *sample.trust_options()))
    assert text == (
        f"{GATEWAY} node {NODE}: valid (9 records, 3 signatures, 1 timestamps, 1 not yet stamped)\n"
    )
    assert ok(offline(sample, "verify", "--node", NODE, *sample.trust_options())) == text
    assert offline(sample, "verify").exit_code == 2  # a live log is verified with trust anchors only

    edited = await build_log(tmp_path / "edited", sample.trust)
    with edited.engine.begin() as connection:
        records = tables.records
        connection.execute(sa.update(records).where(records.c.seq == 6).values(client=OTHER_CLIENT))
    result = offline(edited, "verify", *edited.trust_options())
    assert result.exit_code == 1
    assert "INVALID at record 6 (modified)" in result.stdout
    assert "the 5 records before it check out" in result.stdout
    assert result.stderr.startswith(f"first problem: {GATEWAY} node {NODE}, record 6: modified:")
    edited.engine.dispose()


async def test_verify_a_directory_of_chained_archives(sample: SampleLog, tmp_path: Path) -> None:
    log = await build_log(tmp_path / "archived", sample.trust)
    directory = tmp_path / "archives"
    archiver = Archiver(ChainArchive(log.engine, GATEWAY, NODE), directory, batch_size=3)
    paths = archiver.archive_pending()
    assert len(paths) == 3  # the 8 stamped records, 3 to an archive
    text = ok(run("verify", str(directory), *log.trust_options()))
    assert [line.split(": ")[1].split()[0] for line in text.splitlines()] == ["valid"] * 3
    assert ok(run("verify", str(paths[1]), *log.trust_options())).count("valid (3 containers") == 1

    paths[1].unlink()  # an archive gone: the next one names a predecessor that is not there
    result = run("verify", str(directory), *log.trust_options())
    assert result.exit_code == 1
    assert "names" in result.stderr and "as its predecessor" in result.stderr
    log.engine.dispose()


def test_verify_with_trust_from_a_signed_global_configuration(sample: SampleLog, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    registry_key = generate_key(KeyAlgorithm.EC)
    registry = CertificateAuthority(
        build_ca_certificate(registry_key, "registry CA", now), registry_key, CaSettings()
    )
    signer_key = generate_key(KeyAlgorithm.EC)
    signer = issue_certificate(registry, ConfigurationSignerProfile(), signer_key.public_key(), now)

    conf = sample.globalconf()
    globalconf, anchor = tmp_path / "globalconf.json", tmp_path / "anchor.json"
    globalconf.write_bytes(sign_globalconf(conf, signer_key, signer))
    anchor.write_bytes(anchor_to_json(Anchor("DEV", ("http://127.0.0.1:9/globalconf",), (signer,))))

    out = tmp_path / "out"
    ok(offline(sample, "export", "fault-1", "--out", str(out)))
    for container in sorted(out.iterdir()):
        text = ok(run("verify", str(container), "--globalconf", str(globalconf), "--anchor", str(anchor)))
        assert "valid" in text.splitlines()[0]

    anchor.write_bytes(
        anchor_to_json(
            Anchor("DEV", ("http://127.0.0.1:9/globalconf",), (sample.trust.ca,))
        )  # not who signed
    )
    container = next(out.iterdir())
    result = run("verify", str(container), "--globalconf", str(globalconf), "--anchor", str(anchor))
    assert result.exit_code == 1 and "trust anchors: " in result.output


# --- against a node's management API ---------------------------------------------------------


def test_the_same_commands_through_a_nodes_api(
    sample: SampleLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository, keys = make_repository(tmp_path)
    inspector = LogInspector(sample.engine, GATEWAY, trust=lambda: sample.container_trust)
    ctx = AdminContext(repository=repository, data_dir=tmp_path, server_id=SERVER, message_log=inspector)
    monkeypatch.setattr(log_cli, "MAX_EXPORT_PER_CALL", 3)  # so that an export takes several pages
    with ServerThread(make_admin_app(ctx)) as server:

        def api(*args: str, role: Role = Role.SECURITY_OFFICER) -> Result:
            return run(*args, env={"XGATE_ADMIN_URL": server.url, "XGATE_API_KEY": keys[role]})

        offline_table = ok(offline(sample, "search", "--client", CLIENT))
        assert ok(api("search", "--client", CLIENT)) == offline_table
        assert "VALID" in ok(api("show", "soap-1"))
        assert ok(api("verify")).startswith(f"{GATEWAY} node {NODE}: valid (9 records")

        out = tmp_path / "exported"
        ok(api("export", "--client", CLIENT, "--out", str(out)))
        assert len(list(out.iterdir())) == 7  # every record but soap-2's, in pages of 3

        refused = api("search", role=Role.OBSERVER)
        assert refused.exit_code == 1 and "403 forbidden" in refused.output
        trusted = api("show", "soap-1", *sample.trust_options())
        assert trusted.exit_code == 2 and "a node verifies with its own" in trusted.output

    audited = [(e.action, e.result) for e in reversed(repository.audit_entries(limit=100))]
    ok_ = AuditResult.OK
    assert audited == [
        ("message_log.search", ok_),
        ("message_log.show", ok_),
        ("message_log.verify", ok_),
        *[("message_log.export", ok_)] * 3,
        ("message_log.search", AuditResult.REFUSED),
    ]
    repository.engine.dispose()
