"""The docs are tested: every shell block of README.md and docs/*.md runs in a test, or says why not.

Each block is preceded by `<!-- tested: tests/FILE.py::TEST -->` (that test runs it) or
`<!-- illustrative: WHY -->`. The blocks claimed here run as a reader would run them: with
bash (`set -euo pipefail`), `xgate` on PATH, in a fresh directory where `var/demo` is one
development federation (started once for the module), so the placeholders the docs fill in
from `var/demo/federation.json` are real.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gateway.dev.federation import set_demo_cache_policies
from tests.conftest import Federation, running_federation, wait_until
from tests.docblocks import REPO, Block, all_blocks, claimed_blocks, free_port, serving, shell_blocks

VENV_BIN = Path(sys.executable).parent
BLOCK_TIMEOUT_SECONDS = 120
VERIFY_CONTAINER = "tests/test_verification_doc.py::test_the_documented_steps_pass_on_a_real_container"


def reader_env(**extra: str) -> dict[str, str]:
    """A reader's environment: no XGATE_* settings of ours, the venv's `xgate` first on PATH."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("XGATE_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    return {**env, **extra}


def run_block(
    block: Block, cwd: Path, env: dict[str, str] | None = None, after: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.script + after],
        cwd=cwd,
        env=env or reader_env(),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_SECONDS,
        check=False,
    )


def run_ok(block: Block, cwd: Path, env: dict[str, str] | None = None, after: str = "") -> str:
    result = run_block(block, cwd, env, after)
    assert result.returncode == 0, f"{block.where} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def this_test(name: str) -> str:
    return f"tests/test_docs.py::{name}"


# --- every block is claimed or illustrative ---------------------------------------------------


def test_every_shell_block_is_tested_or_illustrative() -> None:
    blocks = all_blocks()
    assert len(blocks) > 20
    unmarked = [block.where for block in blocks if not block.tested_by and not block.illustrative]
    assert not unmarked, (
        "shell blocks neither run by a test nor marked illustrative (put "
        "<!-- tested: tests/FILE.py::TEST --> or <!-- illustrative: WHY --> right before each): "
        + ", ".join(unmarked)
    )


def test_every_claim_names_a_test_that_exists() -> None:
    wrong = []
    for block in all_blocks():
        for test_id in block.tested_by:
            file, _, name = test_id.partition("::")
            path = REPO / file
            if not (file.startswith("tests/") and name and path.is_file()):
                wrong.append(f"{block.where}: {test_id}")
            elif not re.search(rf"^(async )?def {re.escape(name)}\(", path.read_text(), re.MULTILINE):
                wrong.append(f"{block.where}: {test_id} (no such test)")
    assert not wrong, "claims naming no test: " + ", ".join(wrong)


def test_the_harness_finds_an_unmarked_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```sh\necho one\n```\n\n<!-- illustrative: why -->\n```bash\necho two\n```\n"
        "<!-- tested: tests/test_docs.py::x -->\n<!-- other:begin -->\n```console\necho three\n```\n"
        "```\nnot shell\n```\n"
    )
    one, two, three = shell_blocks(page)
    assert (one.line, one.text, one.tested_by, one.illustrative) == (3, "echo one\n", [], False)
    assert (two.line, two.illustrative) == (8, True)
    assert (three.line, three.tested_by) == (13, ["tests/test_docs.py::x"])
    assert three.script == ""  # a console block runs its `$ ` lines only


def test_a_console_block_runs_its_prompt_lines(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```console\n$ echo one\none\n$ echo two\ntwo\n```\n")
    (block,) = shell_blocks(page)
    assert block.script == "echo one\necho two\n"


# --- the blocks, against one federation --------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with running_federation(tmp_path_factory.mktemp("docs-federation")) as running:
        yield running


@pytest.fixture
def workspace(demo: Federation, tmp_path: Path) -> Path:
    """A reader's directory: `var/demo` is the federation, as after `xgate federation up --dir var/demo`."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "demo").symlink_to(demo.dir)
    return tmp_path


def test_readme_puts_xgate_on_the_path(tmp_path: Path) -> None:
    (block,) = claimed_blocks(this_test("test_readme_puts_xgate_on_the_path"))
    env = reader_env(PATH="/usr/local/bin:/usr/bin:/bin")
    out = run_ok(block, REPO, env, after="command -v xgate\nxgate --help > /dev/null\n")
    assert out.strip() == str(REPO / ".venv" / "bin" / "xgate")


def test_readme_calls_a_service_through_the_federation(workspace: Path) -> None:
    (block,) = claimed_blocks(this_test("test_readme_calls_a_service_through_the_federation"))
    out = run_ok(block, workspace)
    assert '"personalCode": "38001085718"' in out
    assert "Social Security Fund" in out  # listClients
    list_methods = out.strip().splitlines()[-1]
    assert '"service_code": "benefits"' in list_methods, out


def test_the_federation_registry_answers_the_cli(workspace: Path) -> None:
    (block,) = claimed_blocks(this_test("test_the_federation_registry_answers_the_cli"))
    out = run_ok(block, workspace)
    assert "Civil Registry" in out and "approved" in out


def test_a_configuration_checks_with_openssl(workspace: Path) -> None:
    fetch, check = claimed_blocks(this_test("test_a_configuration_checks_with_openssl"))
    run_ok(fetch, workspace)
    out = run_ok(check, workspace)
    assert "signer.pem: OK" in out and "Verified OK" in out
    # The last line alone, on a changed content.json, as the doc says: Verification failure.
    last = check.script.strip().splitlines()[-1]
    assert last.startswith("openssl dgst")
    content = workspace / "content.json"
    content.write_bytes(content.read_bytes().replace(b'"version":', b'"version":1'))
    refused = subprocess.run(["bash", "-c", last], cwd=workspace, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "Verification failure" in refused.stdout


def test_a_logged_message_is_exported_and_checked_by_hand(demo: Federation, workspace: Path) -> None:
    (export,) = claimed_blocks(this_test("test_a_logged_message_is_exported_and_checked_by_hand"))
    (check,) = claimed_blocks(
        "tests/test_verification_doc.py::test_the_documented_steps_pass_on_a_real_container"
    )
    response = requests.get(
        demo.internal_url("gw-a") + "/r1/DEV/GOV/1003/benefits/benefits/benefits/38001085718",
        headers={"X-Road-Client": "DEV/GOV/1001/benefits-office"},
        timeout=30,
    )
    response.raise_for_status()

    def exported_and_checked() -> bool:
        for name in ("exported", "container.asice", "c"):  # the check unpacks into c/
            subprocess.run(["rm", "-rf", str(workspace / name)], check=True)
        return run_block(export, workspace).returncode == 0 and run_block(check, workspace).returncode == 0

    # The newest record is checked once its timestamping batch is stamped (every 2 s here).
    wait_until(exported_and_checked, 30, "the exported container to pass the hand check")


def test_a_registry_runs_as_documented(tmp_path: Path) -> None:
    init, serve, key = claimed_blocks(this_test("test_a_registry_runs_as_documented"))
    out = run_ok(init, tmp_path)
    assert "API key (registry_administrator, shown once)" in out
    # Free ports instead of 4400 and 4401, as the doc says to edit them, so a running demo is safe.
    config = tmp_path / "var" / "central" / "central.toml"
    management, distribution = free_port(), free_port()
    text = config.read_text()
    text = re.sub(r"(\[management\][^\[]*?port = )4400", rf"\g<1>{management}", text, flags=re.DOTALL)
    text = re.sub(r"(\[distribution\][^\[]*?port = )4401", rf"\g<1>{distribution}", text, flags=re.DOTALL)
    config.write_text(text)
    url = f"http://127.0.0.1:{management}"
    command = ["bash", "-c", "set -euo pipefail\n" + serve.script]
    with serving(command, url + "/health", cwd=tmp_path, env=reader_env()):
        run_ok(key, tmp_path, reader_env(XGATE_CENTRAL_URL=url))


def test_the_cache_commands_run_against_the_demo(demo: Federation, workspace: Path) -> None:
    """docs/cache.md, top to bottom, as one reader's shell: its first block sets the placeholders
    from var/demo/federation.json, the others set policies, run the replica by hand, call through
    the cache and find the answers served from it in the message log."""
    set_demo_cache_policies(demo.description)
    blocks = claimed_blocks(this_test("test_the_cache_commands_run_against_the_demo"))
    assert len(blocks) == 7 and blocks[0].where.startswith("docs/cache.md")
    whole = dataclasses.replace(
        blocks[0], language="sh", text="".join(block.script + "\n" for block in blocks)
    )
    out = run_ok(whole, workspace)
    assert "person-refresh" in out and "benefits-replica" in out
    assert re.search(r"(?i)xgate-cache: hit; age=\d+; original-id=", out), out
    assert "cache.hit" in out  # xgate log search and the API found the answer served from the cache


def test_the_quickstart_runs_for_each_user(demo: Federation, workspace: Path) -> None:
    """docs/quickstart.md: the agency registers a service and grants it, the developer finds and
    calls it (and a SOAP service), the officer finds, exports and verifies the exchanges."""
    agency, developer, officer = claimed_blocks(this_test("test_the_quickstart_runs_for_each_user"))
    out = run_ok(agency, workspace)
    assert "applications" in out and "access.grant" in out, out  # registered, granted, audited
    out = run_ok(developer, workspace)
    assert "DEV/GOV/1003/benefits/applications" in out and "HTTP 200 OK" in out
    assert "getPersonResponse" in out and (workspace / "getPerson.wsdl").is_file()

    def stamped() -> bool:
        answer = demo.admin("gw-a").request("GET", "/api/v1/message-log/records", params={"limit": "1"})
        records = answer["records"]
        return bool(records) and bool(records[0]["timestamped"])

    wait_until(stamped, 30, "gw-a's newest record to be timestamped")  # the officer audits the past
    out = run_ok(officer, workspace)
    assert "2 valid containers" in out and ": valid (" in out
