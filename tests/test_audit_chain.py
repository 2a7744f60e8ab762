"""The management API's audit log is tamper evident (issue 9, item 13): hash chained, and its
newest hash is what the signed log heads cover. Editing, deleting or inserting an entry in the
database is found."""

from __future__ import annotations

import sqlalchemy as sa

from gateway.adminstore import AuditResult
from gateway.serverconf import tables
from gateway.serverconf.repository import ServerConfRepository
from tests import test_admin_cli, test_serverconf
from tests.test_admin_cli import Live, Role

migrated_url = test_serverconf.migrated_url
engine = test_serverconf.engine
repo = test_serverconf.repo
live = test_admin_cli.live

A = tables.audit_log


def _three(repo: ServerConfRepository) -> list[int]:
    return [
        repo.audit("key:1", "subsystems.add", "DEV/GOV/1001/benefits", {"auth": "cert"}),
        repo.audit("key:2", "services.enable", "DEV/GOV/1001/benefits/getPerson", None, AuditResult.REFUSED),
        repo.audit("key:1", "apikeys.revoke", "3", {"n": 1}),
    ]


def test_an_untouched_audit_log_verifies_and_gives_its_head(repo: ServerConfRepository) -> None:
    assert repo.verify_audit_chain().ok and repo.audit_head() is None
    _three(repo)
    report = repo.verify_audit_chain()
    assert report.ok and report.checked == 3
    assert report.head_hash == repo.audit_head() is not None


def test_an_edited_audit_row_is_found(repo: ServerConfRepository, engine: sa.Engine) -> None:
    ids = _three(repo)
    with engine.begin() as connection:
        connection.execute(sa.update(A).where(A.c.id == ids[1]).values(result="ok"))
    report = repo.verify_audit_chain()
    assert not report.ok and report.first_bad_id == ids[1]
    assert report.problem is not None and "fields" in report.problem


def test_a_deleted_audit_row_is_found(repo: ServerConfRepository, engine: sa.Engine) -> None:
    ids = _three(repo)
    with engine.begin() as connection:
        connection.execute(sa.delete(A).where(A.c.id == ids[1]))
    report = repo.verify_audit_chain()
    assert not report.ok and report.first_bad_id == ids[2]


def test_the_head_moves_with_each_entry(repo: ServerConfRepository) -> None:
    repo.audit("key:1", "a")
    first = repo.audit_head()
    repo.audit("key:1", "b")
    assert repo.audit_head() not in (None, first)


def test_admin_audit_verify_finds_an_edited_row(live: Live) -> None:
    """`xgate admin audit --verify` over the management API, before and after an edit in the database."""
    live.ok("subsystems", "list")
    live.repository.audit("key:1", "subsystem.add", "DEV/GOV/1001/x", {"a": 1})
    result = live.run("audit", "--verify", role=Role.SECURITY_OFFICER)
    assert result.exit_code == 0 and "audit log valid" in result.output, result.output
    first = min(entry.id for entry in live.repository.audit_entries(limit=1000))
    with live.repository.engine.begin() as connection:
        connection.execute(sa.update(A).where(A.c.id == first).values(actor="someone-else"))
    result = live.run("audit", "--verify", role=Role.SECURITY_OFFICER)
    assert result.exit_code == 1 and f"INVALID at entry {first}" in result.output, result.output
    result = live.run("audit", "--verify", role=Role.OBSERVER)
    assert result.exit_code == 1 and "403 forbidden" in result.output
