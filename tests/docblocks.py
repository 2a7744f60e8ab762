"""The shell blocks of README.md and docs/*.md, with the marks that say how each is covered.

A shell block (```sh, ```bash, ```console, ```shell) is preceded, on the lines right before its
fence, by HTML comments; `<!-- tested: tests/FILE.py::TEST -->` says which test runs it and
`<!-- illustrative: WHY -->` that none does and why. tests/test_docs.py holds every block to one
of the two; tests run a claimed block with `claimed_blocks(test_id)`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import requests

REPO: Final = Path(__file__).resolve().parent.parent
SHELL_FENCE: Final = re.compile(r"```(sh|bash|console|shell)\s*$")
COMMENT: Final = re.compile(r"<!--\s*(.*?)\s*-->\s*$")
TESTED: Final = re.compile(r"tested:\s*(\S+)$")
ILLUSTRATIVE: Final = re.compile(r"illustrative:\s*(\S.*)$")


@dataclass(frozen=True)
class Block:
    """One shell block: where its fence is, its text, and the comments right before it."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str  # sh, bash, console or shell
    text: str
    comments: tuple[str, ...]

    @property
    def script(self) -> str:
        """What bash runs: the text, or for a console block its `$ ` lines without the prompt."""
        if self.language != "console":
            return self.text
        return "".join(line[2:] + "\n" for line in self.text.splitlines() if line.startswith("$ "))

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def tested_by(self) -> list[str]:
        return [m.group(1) for c in self.comments if (m := TESTED.match(c))]

    @property
    def illustrative(self) -> bool:
        return any(ILLUSTRATIVE.match(c) for c in self.comments)


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def shell_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if not line.startswith("```"):
            index += 1
            continue
        end = next((j for j in range(index + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        if fence := SHELL_FENCE.match(line):
            comments: list[str] = []
            before = index - 1
            while before >= 0 and (match := COMMENT.match(lines[before].strip())):
                comments.insert(0, match.group(1))
                before -= 1
            indent = len(lines[index]) - len(lines[index].lstrip())
            body = "".join(text[indent:] + "\n" for text in lines[index + 1 : end])
            blocks.append(Block(path, index + 1, fence.group(1), body, tuple(comments)))
        index = end + 1
    return blocks


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in shell_blocks(path)]


def claimed_blocks(test_id: str) -> list[Block]:
    """The blocks `<!-- tested: TEST_ID -->` claims, in document order; at least one."""
    blocks = [block for block in all_blocks() if test_id in block.tested_by]
    assert blocks, f"no block of the docs is marked <!-- tested: {test_id} -->"
    return blocks


def free_port() -> int:
    """A port nothing listens on now (the caller's server binds it soon after)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(
    command: list[str], health_url: str, cwd: Path, env: dict[str, str], timeout: float = 60
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` (a server) running until its `health_url` answers 200, and stopped on leaving."""
    log = cwd / f"serving-{len(list(cwd.glob('serving-*.log')))}.log"
    with log.open("wb") as output:
        # Its own process group, so that a server started by a bash block is stopped with it.
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while not _answers(health_url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{' '.join(command)} did not serve {health_url}:\n{log.read_text()}")
            time.sleep(0.1)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False
