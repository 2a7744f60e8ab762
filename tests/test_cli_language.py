"""The management CLIs speak one language (issue 15, "One CLI language"): one identifier text
form, one paging style, one name per command, and `access grant` that knows its subject.

`xgate admin` runs against a live management API on 127.0.0.1 (as in test_admin_cli), here with
a global configuration, so grants to unknown subjects can be refused; `xgate central` against a
registry set up by `central init` (test_central_cli's fixture).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from gateway.admin.roles import Role
from gateway.apicli import Progress, page_position, page_token
from gateway.globalconf import GlobalConf
from gateway.globalconf.model import GlobalGroup, Member
from gateway.ids import GlobalGroupId, slash_forms_in
from gateway.messagelog.officer import QueryError, SearchQuery
from tests.logsamples import CLIENT, GATEWAY, OTHER_CLIENT, SERVICE, SampleLog
from tests.test_admin_cli import SAMPLES, Live, serving
from tests.test_central_cli import Setup, setup  # noqa: F401 (a fixture)
from tests.test_messagelog_cli import offline, run, sample  # noqa: F401 (a fixture)

PROVIDER = "DEV/GOV/1001/PROVIDER"
CONSUMER = "DEV/COM/2002/CONSUMER"
NEXT_PAGE = re.compile(r"next page: --page (\S+)")


def _globalconf() -> GlobalConf:
    now = dt.datetime.now(dt.UTC)
    return GlobalConf(
        instance="DEV",
        version=7,
        generated_at=now,
        expires_at=now + dt.timedelta(hours=1),
        members=(
            Member("GOV", "1001", "Agency", ("PROVIDER",)),
            Member("COM", "2002", "Firm", ("CONSUMER",)),
        ),
        global_groups=(GlobalGroup(GlobalGroupId("DEV", "partners"), "Partner agencies"),),
    )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    conf = _globalconf()
    with serving(tmp_path, globalconf=lambda: conf) as running:
        yield running


# --- identifiers -------------------------------------------------------------------------------


def test_identifiers_typed_in_colon_form_are_answered_in_the_one_form(live: Live) -> None:
    added = live.ok("subsystems", "add", "DEV:GOV:1001:PROVIDER", "--auth-mode", "http")
    assert PROVIDER in added and "DEV:GOV" not in added
    assert live.ok("subsystems", "remove", "DEV:GOV:1001:PROVIDER", "--yes").strip() == f"removed {PROVIDER}"

    result = live.run("subsystems", "add", "garbage")
    assert result.exit_code == 2 and "INSTANCE/CLASS/MEMBER[/SUBSYSTEM]" in result.output
    result = live.run("keys", "generate", "--usage", "sign", "--member", "DEV/GOV/1001/PROVIDER")
    assert result.exit_code == 2 and "not of the form INSTANCE/CLASS/MEMBER" in result.output


def test_audit_targets_are_shown_in_the_one_form_and_old_entries_still_verify(live: Live) -> None:
    """Entries written with a colon-form target keep their stored text (the hash chain covers it)."""
    live.repository.audit("olga#1", "subsystem.add", "/api/v1/subsystems/DEV:GOV:1001:OLD/services")
    page = live.json("audit", "--action", "subsystem.add", role=Role.SECURITY_OFFICER)
    assert [entry["target"] for entry in page["entries"]] == ["/api/v1/subsystems/DEV/GOV/1001/OLD/services"]
    (stored,) = live.repository.audit_entries(action="subsystem.add")
    assert stored.target.endswith("DEV:GOV:1001:OLD/services")
    assert "audit log valid" in live.ok("audit", "--verify", role=Role.SECURITY_OFFICER)


def test_colon_forms_in_text_become_slashes_and_times_stay() -> None:
    assert slash_forms_in("member DEV:GOV:1001 at 12:30:45") == "member DEV/GOV/1001 at 12:30:45"
    assert slash_forms_in("server DEV/GOV/1001/gw-a") == "server DEV/GOV/1001/gw-a"


# --- paging ------------------------------------------------------------------------------------


def test_every_listing_pages_with_one_token_option(live: Live) -> None:
    for number in range(5):
        live.ok("api-keys", "create", f"bot-{number}", "--role", "observer")
    everything = [entry["id"] for entry in live.json("audit", role=Role.SECURITY_OFFICER)["entries"]]
    assert len(everything) >= 5

    seen: list[int] = []
    args: list[str] = []
    while True:
        result = live.run("audit", "--limit", "2", *args, role=Role.SECURITY_OFFICER)
        assert result.exit_code == 0, result.output
        seen += [int(line.split()[0]) for line in result.output.splitlines()[1:] if line[:1].isdigit()]
        found = NEXT_PAGE.search(result.output)
        if found is None:
            break
        args = ["--page", found.group(1)]
    assert seen == everything

    first = live.json("audit", "--limit", "2", role=Role.SECURITY_OFFICER)
    assert first["next_page"] == page_token("admin audit", first["entries"][-1]["id"])

    old = live.run("audit", "--limit", "2", "--before-id", str(everything[1]), role=Role.SECURITY_OFFICER)
    assert old.exit_code == 0 and "--before-id is deprecated: use --page" in old.output
    assert str(everything[2]) in old.output and "--before-id" not in live.ok("audit", "--help")

    bad = live.run("audit", "--page", "nonsense", role=Role.SECURITY_OFFICER)
    assert bad.exit_code == 2 and "not a page token of `admin audit`" in bad.output
    other = live.run("audit", "--page", page_token("central audit", 3), role=Role.SECURITY_OFFICER)
    assert other.exit_code == 2 and "a page of `central audit`" in other.output


def test_page_tokens_round_trip_and_name_their_listing() -> None:
    token = page_token("log search", 200)
    assert page_position("log search", token) == 200
    with pytest.raises(click.BadParameter):
        page_position("admin audit", token)


# --- command names -----------------------------------------------------------------------------


def test_old_command_names_still_run_hidden_with_a_note(live: Live) -> None:
    help_text = live.ok("--help")
    assert "api-keys" in help_text and "apikeys" not in help_text
    result = live.run("apikeys", "list")
    assert result.exit_code == 0 and "`apikeys` is now `api-keys`" in result.output
    assert "observer-cli" in result.output
    positional = live.run("api-keys", "create", "old-style", "observer")
    assert positional.exit_code == 0, positional.output
    assert live.run("api-keys", "create", "no-role").exit_code == 2


# --- access rights -----------------------------------------------------------------------------


def test_access_grant_reads_the_subject_type_and_refuses_unknown_subjects(live: Live) -> None:
    live.ok("subsystems", "add", PROVIDER)
    live.ok("services", "add-openapi", PROVIDER, "pets", "--file", str(SAMPLES / "petstore.yaml"))
    live.ok("groups", "add", PROVIDER, "friends")

    for subject in (CONSUMER, "DEV:COM:2002", "DEV/partners", "friends"):
        live.ok("access", "grant", PROVIDER, "pets", subject)
    rights = {(r["subject"], r["subject_type"]) for r in live.json("access", "list", PROVIDER, "pets")}
    assert rights == {
        (CONSUMER, "subsystem"),
        ("DEV/COM/2002", "member"),
        ("DEV/partners", "globalgroup"),
        ("friends", "localgroup"),
    }

    typo = live.run("access", "grant", PROVIDER, "pets", "DEV/COM/2002/CONSUMR")
    assert typo.exit_code == 1
    assert "DEV/COM/2002/CONSUMR is not registered in the global configuration (version 7)" in typo.output
    assert "case-sensitive" in typo.output and "force" in typo.output
    for unknown in ("DEV/nobody", "dev/COM/2002"):
        result = live.run("access", "grant", PROVIDER, "pets", unknown)
        assert result.exit_code == 1 and "404 unknown_subject" in result.output, unknown
    live.ok("access", "grant", PROVIDER, "pets", "DEV/COM/2002/CONSUMR", "--force")
    no_group = live.run("access", "grant", PROVIDER, "pets", "strangers")
    assert no_group.exit_code == 1 and "404 not_found" in no_group.output and "strangers" in no_group.output

    shapeless = live.run("access", "grant", PROVIDER, "pets", "a/b/c/d/e")
    assert shapeless.exit_code == 2 and "INSTANCE/CLASS/MEMBER/SUBSYSTEM" in shapeless.output
    mismatch = live.run("access", "grant", PROVIDER, "pets", CONSUMER, "--type", "member")
    assert mismatch.exit_code == 2 and "is a subsystem, not a member" in mismatch.output
    live.ok("access", "revoke", PROVIDER, "pets", "LOCALGROUP:friends", "--yes")
    live.ok("access", "revoke", PROVIDER, "pets", "globalgroup:DEV:partners", "--yes")
    left = {(r["subject"], r["subject_type"]) for r in live.json("access", "list", PROVIDER, "pets")}
    assert ("DEV/partners", "globalgroup") not in left and ("friends", "localgroup") not in left


# --- the registry's CLI ------------------------------------------------------------------------


async def test_central_speaks_the_same_language(setup: Setup) -> None:  # noqa: F811
    def flow() -> None:
        assert setup.central("member-classes", "add", "GOV").exit_code == 0
        for args in (
            ("DEV/GOV/1001", "Social Security Fund"),
            ("GOV/1002", "Tax Board"),
            ("DEV:GOV:1003", "Land Board"),
            ("GOV", "1004", "Old Style Office"),
        ):
            result = setup.central("members", "add", *args)
            assert result.exit_code == 0, result.output
        members = json.loads(setup.central("members", "list", "--json").output)
        assert [m["member_id"] for m in members] == [f"DEV/GOV/100{n}" for n in range(1, 5)]
        elsewhere = setup.central("members", "add", "EE/GOV/1005", "Abroad")
        assert elsewhere.exit_code == 2 and "not of this registry's instance DEV" in elsewhere.output
        shown = setup.central("members", "show", "DEV:GOV:1001")
        assert shown.exit_code == 0 and "member_id: DEV/GOV/1001" in shown.output

        old = setup.central("globalconf", "status", "--json")
        assert old.exit_code == 0 and "`status` is now `show`" in old.output
        assert json.loads(setup.central("globalconf", "show", "--json").output)["instance"] == "DEV"

        audit = setup.central("audit", "--limit", "2")
        assert audit.exit_code == 0, audit.output
        token = NEXT_PAGE.search(audit.output)
        assert token is not None
        rest = setup.central("audit", "--limit", "2", "--page", token.group(1), "--json")
        assert rest.exit_code == 0, rest.output
        later = json.loads(rest.output)["entries"]
        assert later and all(entry["id"] < page_position("central audit", token.group(1)) for entry in later)

    await asyncio.to_thread(flow)


# --- the officer's filters, --database, paging and progress of `xgate log` ----------------------


def test_log_filters_are_checked_and_a_member_matches_its_subsystems(sample: SampleLog) -> None:  # noqa: F811
    def records(*args: str) -> list[int]:
        result = offline(sample, "search", *args, "--json")
        assert result.exit_code == 0, result.output
        return [record["seq"] for record in json.loads(result.stdout)["records"]]

    everything = records()
    assert records("--client", "DEV/GOV/1001") == everything  # benefits and tax-office alike
    assert records("--client", "DEV:GOV:1001:tax-office") == records("--client", OTHER_CLIENT) == [7, 3]
    versioned = records("--service", SERVICE)
    assert versioned and records("--service", SERVICE.rsplit("/", 1)[0]) == versioned
    assert records("--client", "dev/gov/1001") == []  # identifiers are case-sensitive, as documented
    colon_gateway = run("--database", sample.url, "--gateway", GATEWAY.replace("/", ":"), "search", "--json")
    assert [r["seq"] for r in json.loads(colon_gateway.stdout)["records"]] == everything

    for option, value, form in (
        ("--client", "garbage", "INSTANCE/CLASS/MEMBER[/SUBSYSTEM]"),
        ("--client", "DEV/GOV", "INSTANCE/CLASS/MEMBER[/SUBSYSTEM]"),
        ("--service", "DEV/COM/2222", "INSTANCE/CLASS/MEMBER[/SUBSYSTEM]/SERVICE[/VERSION]"),
    ):
        result = offline(sample, "search", option, value)
        assert result.exit_code == 2, (option, value)
        assert form in result.output and "case-sensitive" in result.output
    with pytest.raises(QueryError, match="client"):
        SearchQuery.from_params({"client": "garbage"})  # the API's path: a 400 naming the form


def test_log_database_may_be_a_plain_path_but_never_a_new_file(sample: SampleLog, tmp_path: Path) -> None:  # noqa: F811
    path = sample.url.removeprefix("sqlite:///")
    by_path = run("--database", path, "--gateway", GATEWAY, "search", "--json")
    assert by_path.exit_code == 0, by_path.output
    assert by_path.stdout == offline(sample, "search", "--json").stdout
    for missing in (str(tmp_path / "nope.db"), f"sqlite:///{tmp_path / 'nope.db'}"):
        result = run("--database", missing, "search")
        assert result.exit_code == 1 and "no log database at" in result.output
        assert not (tmp_path / "nope.db").exists()


def test_log_export_pages_like_search(sample: SampleLog, tmp_path: Path) -> None:  # noqa: F811
    first = offline(sample, "export", "--client", CLIENT, "--limit", "3", "--out", str(tmp_path / "a"))
    assert first.exit_code == 0, first.output
    token = NEXT_PAGE.search(first.stderr)
    assert token is not None and len(list((tmp_path / "a").iterdir())) == 3
    rest = offline(
        sample, "export", "--client", CLIENT, "--page", token.group(1), "--out", str(tmp_path / "b")
    )
    assert rest.exit_code == 0, rest.output
    assert len(list((tmp_path / "b").iterdir())) == 4 and "next page" not in rest.stderr
    assert not {p.name for p in (tmp_path / "a").iterdir()} & {p.name for p in (tmp_path / "b").iterdir()}
    old = offline(sample, "search", "--offset", "8", "--json")
    assert old.exit_code == 0 and "--offset is deprecated" in old.stderr
    assert [r["seq"] for r in json.loads(old.stdout)["records"]] == [1]


def test_progress_is_drawn_on_a_terminal_only(sample: SampleLog, tmp_path: Path) -> None:  # noqa: F811
    stream = io.StringIO()
    with Progress("verifying", 3, "containers", stream=stream) as progress:
        for _ in range(3):
            progress.advance()
        progress.echo("a line of the operation's own")
    drawn = stream.getvalue()
    assert "\rverifying: 3/3 containers (100%)" in drawn and drawn.endswith("\r")

    out = tmp_path / "evidence"
    assert offline(sample, "export", "--client", CLIENT, "--out", str(out)).exit_code == 0
    verified = run("verify", "--allow-gaps", *map(str, sorted(out.iterdir())), *sample.trust_options())
    assert "chain links: " in verified.stdout  # (one record is not stamped yet: exit status 1)
    assert "\r" not in verified.output and "verifying:" not in verified.output  # stderr is no terminal
