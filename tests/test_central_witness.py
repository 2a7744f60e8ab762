"""The central registry as the witness of gateways' message logs (issue 9, hole 6).

A gateway's node sends its signed log heads to the registry, which keeps them only from a
gateway it lists, signed by that gateway's owner. `xgate log verify --witness` then finds a log
cut together with the node's own head file: the witness still holds the newer head.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from gateway.crypto.certs import certificate_to_pem
from gateway.crypto.rootsig import RootSigner
from gateway.messagelog import tables as log_tables
from gateway.messagelog.cli import cli as log_cli
from gateway.messagelog.db import create_engine, migrate
from gateway.messagelog.headkeeper import HeadKeeper
from gateway.messagelog.heads import LogHead, parse_head, sign_head
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.store import MessageLogWriter
from tests import test_central_registry as central
from tests.test_central_registry import SERVER, Registry, Trust
from tests.test_messagelog_store import make_record

trust = central.trust
migrated_url = central.migrated_url
database_url = central.database_url
registry = central.registry

NODE = "node-1"
GATEWAY = SERVER.to_text()


def head(seq: int, signer: central.Pair, gateway: str = GATEWAY) -> str:
    signed = sign_head(
        LogHead(gateway, NODE, seq, bytes([seq]) * 32, dt.datetime.now(dt.UTC)),
        RootSigner(signer.key, signer.certificate),
    )
    return signed.to_line()


async def post_head(registry: Registry, line: str) -> tuple[int, str]:
    async with registry.session.post(registry.url + "/heads", data=line.encode()) as response:
        return response.status, await response.text()


async def test_the_witness_keeps_heads_of_listed_gateways_signed_by_their_owner(registry: Registry) -> None:
    await registry.registered_server()
    assert (await post_head(registry, head(5, registry.trust.owner)))[0] == 200
    assert (await post_head(registry, head(7, registry.trust.owner)))[0] == 200
    async with registry.session.get(f"{registry.url}/heads/{GATEWAY}") as response:
        assert response.status == 200
        lines = (await response.text()).splitlines()
    assert [parse_head(line).head.seq for line in lines] == [7]

    # Going back, another member's key, an edited head, an unlisted gateway: all refused.
    status, _ = await post_head(registry, head(6, registry.trust.owner))
    assert status == 409
    status, text = await post_head(registry, head(9, registry.trust.other))
    assert status == 403 and "owner" in text
    forged = head(9, registry.trust.owner).replace('"seq":9', '"seq":90')
    status, text = await post_head(registry, forged)
    assert status == 403 and "another head" in text
    status, _ = await post_head(
        registry, head(9, registry.trust.owner, gateway=GATEWAY.replace("gw1", "gw9"))
    )
    assert status == 404
    refusals = registry.repository.admin.audit_entries(action="loghead.submit")
    assert len(refusals) == 4 and all(entry.result == "refused" for entry in refusals)
    assert registry.repository.newest_log_heads(GATEWAY) == lines


async def _log_with_head(
    registry: Registry, url: str, head_file: Path, records: int
) -> tuple[sa.Engine, Callable[[], None]]:
    trust: Trust = registry.trust
    engine = create_engine(url)
    writer = MessageLogWriter(
        engine,
        gateway=GATEWAY,
        node=NODE,
        record_signer=RecordSigner(trust.owner.key, trust.owner.certificate),
    )
    for i in range(records):
        await writer.append(make_record(i, gateway=GATEWAY, outcome="Server.ClientProxy.NetworkError"))
    await writer.aclose()

    async def witness(line: str) -> None:
        status, text = await post_head(registry, line)
        assert status == 200, text

    keeper = HeadKeeper(
        engine,
        gateway=GATEWAY,
        node=NODE,
        signer=RootSigner(trust.owner.key, trust.owner.certificate),
        head_file=head_file,
        interval_seconds=10,
        witness=witness,
    )
    assert await keeper.write_now() is not None
    return engine, engine.dispose


@pytest.mark.parametrize("keep", [3, 0], ids=["newest records cut", "every record deleted"])
async def test_verify_finds_a_truncation_the_witness_saw(
    registry: Registry, tmp_path: Path, keep: int
) -> None:
    await registry.registered_server()
    url = f"sqlite:///{tmp_path / 'log.db'}"
    migrate(url)
    engine, dispose = await _log_with_head(registry, url, tmp_path / "heads.jsonl", 6)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(certificate_to_pem(registry.trust.ca.certificate))
    runner = CliRunner()

    def verify(*extra: str) -> tuple[int, str]:
        result = runner.invoke(
            log_cli, ["--database", url, "--gateway", GATEWAY, "verify", "--ca", str(ca), *extra]
        )
        return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")

    code, output = await asyncio.to_thread(verify, "--witness", registry.url)
    assert code == 0, output
    # The forger cuts the log, moves the chain row back, and empties the node's head file.
    with engine.begin() as connection:
        connection.execute(sa.delete(log_tables.records).where(log_tables.records.c.seq > keep))
        connection.execute(sa.delete(log_tables.heads))
        if keep:
            last = connection.execute(
                sa.select(log_tables.records.c.record_hash).where(log_tables.records.c.seq == keep)
            ).scalar_one()
            connection.execute(sa.update(log_tables.chains).values(head_seq=keep, head_hash=last))
        else:
            connection.execute(sa.delete(log_tables.chains))
    saved = tmp_path / "heads-copy.jsonl"  # a copy of the head file kept elsewhere (backups)
    saved.write_bytes((tmp_path / "heads.jsonl").read_bytes())
    (tmp_path / "heads.jsonl").write_text("")
    dispose()
    code, output = await asyncio.to_thread(verify)
    if keep:
        assert code == 0, output  # a cut at a batch's end, with the head file emptied: nothing local shows it
    code, output = await asyncio.to_thread(verify, "--witness", registry.url)
    assert code == 1, output
    assert "truncated" in output and f"records {keep + 1} to 6 are missing" in output
    code, output = await asyncio.to_thread(verify, "--heads", str(saved))
    assert code == 1, output
    assert "truncated" in output and f"records {keep + 1} to 6 are missing" in output
    # A forged line in a head file is a finding, not silently skipped.
    forged = tmp_path / "forged.jsonl"
    forged.write_text(saved.read_text().replace('"seq":6', '"seq":3'))
    code, output = await asyncio.to_thread(verify, "--heads", str(forged))
    assert code == 1 and "another head" in output, output


async def test_the_registry_audit_log_is_chained_and_an_edit_shows(registry: Registry) -> None:
    await registry.registered_server()
    admin = registry.repository.admin
    report = admin.verify_audit_chain()
    assert report.ok and report.checked >= 2 and report.head_hash == admin.audit_head()
    answer = await registry.ok("GET", "/audit-log/verify")
    assert answer["ok"] and answer["head_hash"] == report.head_hash.hex()
    from gateway.central import tables as central_tables

    table = central_tables.audit_log
    first = min(entry.id for entry in admin.audit_entries(limit=1000))
    with registry.repository.engine.begin() as connection:
        connection.execute(sa.update(table).where(table.c.id == first).values(target="something else"))
    answer = await registry.ok("GET", "/audit-log/verify")
    assert not answer["ok"] and answer["first_bad_id"] == first
