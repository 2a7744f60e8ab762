"""Archives: chained zip files of containers, the hook, and chain verification.

The records come as the store returns them (`store.StoredRecord` with its `StoredTimestamp`),
with real signatures and `openssl ts` tokens (tests/test_asice.py); archives are checked by
our verifier and by docs/verification.md's shell steps (unzip, sha256sum, python3).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.crypto.hashtree import root_from_proof
from gateway.messagelog.archive import (
    ARCHIVE_FORMAT,
    CHAIN_HEAD_FILE,
    INDEX_NAME,
    Archiver,
    ContainerTrust,
    file_sha256,
    verify_archive_chain,
)
from gateway.messagelog.asice import encode_proof
from gateway.messagelog.store import ChainArchive, StoredRecord, StoredTimestamp
from tests.test_asice import NOW, Trust, make_messages, make_trust
from tests.test_verification_doc import run_doc_block


class MemoryStore:
    """The two calls the archiver makes, over a list: what messagelog.store does over its tables."""

    def __init__(self, records: Sequence[StoredRecord]) -> None:
        self.pending = list(records)
        self.marked: list[tuple[list[int], str]] = []

    def records_to_archive(self, limit: int) -> list[StoredRecord]:
        return self.pending[:limit]

    def mark_archived(self, seqs: Sequence[int], archive_name: str) -> int:
        self.marked.append((list(seqs), archive_name))
        self.pending = [record for record in self.pending if record.seq not in seqs]
        return len(seqs)


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    return make_trust(tmp_path_factory.mktemp("trust"))


@pytest.fixture(scope="module")
def stored(trust: Trust) -> list[StoredRecord]:
    messages = make_messages(trust)
    first = messages[0]
    assert first.timestamp_proof is not None and first.timestamp_token is not None
    root = root_from_proof(first.record_hash, first.timestamp_proof)
    stamp = StoredTimestamp(1, 1, len(messages), root, first.timestamp_token, NOW)
    records = []
    for seq, message in enumerate(messages, start=1):
        assert message.timestamp_proof is not None
        records.append(
            StoredRecord(
                seq=seq,
                node="node1",
                record=message.record,
                prev_hash=message.prev_hash,
                record_hash=message.record_hash,
                timestamp=stamp,
                timestamp_proof_json=encode_proof(message.record_hash, message.timestamp_proof),
            )
        )
    return records


def ticking_clock() -> Callable[[], dt.datetime]:
    """A second later on every call: archive names sort in creation order."""
    moments = iter(NOW + dt.timedelta(seconds=n) for n in range(10_000))
    return lambda: next(moments)


def container_trust(trust: Trust) -> ContainerTrust:
    return ContainerTrust([trust.ca.certificate], [trust.tsa_cert])


def index_of(path: Path) -> dict[str, object]:
    with zipfile.ZipFile(path) as archive:
        index: dict[str, object] = json.loads(archive.read(INDEX_NAME))
    return index


def archive_all(
    stored: list[StoredRecord], directory: Path, batch_size: int = 2
) -> tuple[list[Path], MemoryStore]:
    store = MemoryStore(stored)
    paths = Archiver(store, directory, batch_size=batch_size, clock=ticking_clock()).archive_pending()
    return paths, store


# --- writing --------------------------------------------------------------------------------


def test_records_go_into_chained_archives_and_are_marked(
    trust: Trust, stored: list[StoredRecord], tmp_path: Path
) -> None:
    paths, store = archive_all(stored, tmp_path)
    assert len(paths) == 3  # five records, two per archive
    assert paths == sorted(tmp_path.glob("xgate-archive-*.zip"))
    assert store.pending == []
    assert store.marked == [([1, 2], paths[0].name), ([3, 4], paths[1].name), ([5], paths[2].name)]
    indexes = [index_of(path) for path in paths]
    assert [index["format"] for index in indexes] == [ARCHIVE_FORMAT] * 3
    assert indexes[0]["previous_archive_sha256"] is None
    assert indexes[1]["previous_archive_sha256"] == file_sha256(paths[0])
    assert indexes[2]["previous_archive_sha256"] == file_sha256(paths[1])
    assert json.loads((tmp_path / CHAIN_HEAD_FILE).read_text()) == {
        "name": paths[2].name,
        "sha256": file_sha256(paths[2]),
    }
    entries = indexes[0]["containers"]
    assert isinstance(entries, list)
    assert [entry["seq"] for entry in entries] == [1, 2]
    assert entries[0]["name"] == f"000000000001-{stored[0].record_hash.hex()[:16]}.asice"
    assert entries[0]["message_id"] == "m0"
    with zipfile.ZipFile(paths[0]) as archive:
        container = archive.read(entries[0]["name"])
        assert archive.getinfo(entries[0]["name"]).compress_type == zipfile.ZIP_STORED
    assert hashlib.sha256(container).hexdigest() == entries[0]["sha256"]
    assert (paths[0].stat().st_mode & 0o777) == 0o640
    assert not list(tmp_path.glob(".*.partial"))

    report = verify_archive_chain(paths, trust=container_trust(trust))
    assert report.valid, report.problems
    assert [check.containers for check in report.archives] == [2, 2, 1]


def test_nothing_to_archive_writes_nothing(tmp_path: Path) -> None:
    archiver = Archiver(MemoryStore([]), tmp_path / "archives")
    assert archiver.archive_once() is None
    assert archiver.archive_pending() == []
    assert not (tmp_path / "archives").exists()


def test_a_record_whose_hash_is_wrong_is_not_archived_nor_marked(
    stored: list[StoredRecord], tmp_path: Path
) -> None:
    broken = replace(stored[1], record_hash=bytes(32))
    store = MemoryStore([stored[0], broken])
    with pytest.raises(ValueError, match="stored hash is not the hash of its content"):
        Archiver(store, tmp_path).archive_once()
    assert store.marked == []
    assert list(tmp_path.iterdir()) == []  # no archive, no partial file, no head


def test_the_chain_continues_when_the_hook_moves_archives_away(
    stored: list[StoredRecord], tmp_path: Path
) -> None:
    outbox, elsewhere = tmp_path / "outbox", tmp_path / "elsewhere"
    elsewhere.mkdir()
    hook = [sys.executable, "-c", f"import shutil, sys; shutil.move(sys.argv[1], {str(elsewhere)!r})"]
    store = MemoryStore(stored)
    paths = Archiver(store, outbox, batch_size=2, hook=hook, clock=ticking_clock()).archive_pending()
    assert list(outbox.glob("*.zip")) == []
    moved = sorted(elsewhere.glob("*.zip"))
    assert [path.name for path in moved] == [path.name for path in paths]
    assert verify_archive_chain(moved).valid


def test_after_a_crash_before_the_head_was_written_the_newest_archive_wins(
    stored: list[StoredRecord], tmp_path: Path
) -> None:
    paths, _ = archive_all(stored[:4], tmp_path)
    (tmp_path / CHAIN_HEAD_FILE).unlink()
    more = Archiver(
        MemoryStore(stored[4:]), tmp_path, clock=lambda: NOW + dt.timedelta(hours=1)
    ).archive_once()
    assert more is not None
    assert index_of(more)["previous_archive_sha256"] == file_sha256(paths[-1])
    assert verify_archive_chain([*paths, more]).valid


def test_a_clock_behind_the_last_archive_does_not_break_the_chain(
    stored: list[StoredRecord], tmp_path: Path
) -> None:
    later = Archiver(MemoryStore(stored[:1]), tmp_path, clock=lambda: NOW + dt.timedelta(hours=1))
    assert later.archive_once() is not None
    store = MemoryStore(stored[1:])
    with pytest.raises(ValueError, match="the clock is behind the last archive"):
        Archiver(store, tmp_path, clock=lambda: NOW).archive_once()
    assert store.marked == []
    assert len(list(tmp_path.glob("*.zip"))) == 1


# --- the hook ----------------------------------------------------------------------------


def test_the_hook_runs_with_the_archive_path(stored: list[StoredRecord], tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    hook = [sys.executable, "-c", f"import sys; open({str(seen)!r}, 'a').write(sys.argv[1] + '\\n')"]
    store = MemoryStore(stored)
    paths = Archiver(store, tmp_path / "a", batch_size=3, hook=hook, clock=ticking_clock()).archive_pending()
    assert seen.read_text().splitlines() == [str(path) for path in paths]


def test_a_failing_hook_is_logged_and_the_archive_kept(
    stored: list[StoredRecord], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hook = [sys.executable, "-c", "import sys; print('upload refused'); sys.exit(3)"]
    store = MemoryStore(stored[:2])
    with caplog.at_level(logging.ERROR, logger="gateway.messagelog.archive"):
        path = Archiver(store, tmp_path, hook=hook).archive_once()
    assert path is not None and path.exists()
    assert store.marked == [([1, 2], path.name)]
    assert "exited 3" in caplog.text and "upload refused" in caplog.text


def test_a_hanging_hook_is_killed_after_its_timeout(
    stored: list[StoredRecord], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hook = [sys.executable, "-c", "import time; time.sleep(30)"]
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="gateway.messagelog.archive"):
        path = Archiver(MemoryStore(stored[:1]), tmp_path, hook=hook, hook_timeout=0.5).archive_once()
    assert time.monotonic() - started < 10
    assert path is not None and path.exists()
    assert "timed out after 0.5s" in caplog.text


def test_a_hook_that_cannot_start_is_logged(
    stored: list[StoredRecord], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="gateway.messagelog.archive"):
        path = Archiver(
            MemoryStore(stored[:1]), tmp_path, hook=[str(tmp_path / "no-such-hook")]
        ).archive_once()
    assert path is not None and path.exists()
    assert "could not start" in caplog.text


# --- verifying the chain ---------------------------------------------------------------------


def rewrite_archive(path: Path, change: Callable[[dict[str, bytes]], dict[str, bytes]]) -> None:
    with zipfile.ZipFile(path) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in change(files).items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())


def test_a_replaced_archive_breaks_the_next_link(stored: list[StoredRecord], tmp_path: Path) -> None:
    paths, _ = archive_all(stored, tmp_path)
    old_digest = file_sha256(paths[1])

    def drop_a_container(files: dict[str, bytes]) -> dict[str, bytes]:
        index = json.loads(files[INDEX_NAME])
        dropped = index["containers"].pop()
        files[INDEX_NAME] = json.dumps(index).encode()
        del files[dropped["name"]]
        return files

    rewrite_archive(paths[1], drop_a_container)  # consistent in itself...
    report = verify_archive_chain(paths)
    assert not report.valid
    assert report.problems == (  # ...but no longer what the next archive names
        f"{paths[2].name}: names {old_digest} as its predecessor, "
        f"but {paths[1].name} is {file_sha256(paths[1])}",
    )


def test_a_missing_archive_breaks_the_chain(stored: list[StoredRecord], tmp_path: Path) -> None:
    paths, _ = archive_all(stored, tmp_path)
    report = verify_archive_chain([paths[0], paths[2]])
    assert [bool(check.problems) for check in report.archives] == [False, True]
    assert "as its predecessor" in report.problems[0]


def test_a_changed_container_is_found(trust: Trust, stored: list[StoredRecord], tmp_path: Path) -> None:
    paths, _ = archive_all(stored, tmp_path)
    name = next(n for n in zipfile.ZipFile(paths[0]).namelist() if n != INDEX_NAME)

    def flip(files: dict[str, bytes]) -> dict[str, bytes]:
        changed = bytearray(files[name])
        changed[len(changed) // 2] ^= 0x01
        files[name] = bytes(changed)
        return files

    rewrite_archive(paths[0], flip)
    report = verify_archive_chain(paths)
    assert f"{paths[0].name}: {name} does not match its digest in index.json" in report.problems
    # Rewriting the index to match moves the problem to the container check and the next link.
    with zipfile.ZipFile(paths[0]) as archive:
        data = archive.read(name)

    def reindex(files: dict[str, bytes]) -> dict[str, bytes]:
        index = json.loads(files[INDEX_NAME])
        for entry in index["containers"]:
            if entry["name"] == name:
                entry["sha256"] = hashlib.sha256(data).hexdigest()
        files[INDEX_NAME] = json.dumps(index).encode()
        return files

    rewrite_archive(paths[0], reindex)
    problems = verify_archive_chain(paths, trust=container_trust(trust)).problems
    assert any(problem.startswith(f"{paths[0].name}: {name}: ") for problem in problems), problems
    assert any(problem.startswith(f"{paths[1].name}: names ") for problem in problems)


def test_unsafe_archives_are_refused(stored: list[StoredRecord], tmp_path: Path) -> None:
    paths, _ = archive_all(stored[:2], tmp_path)
    rewrite_archive(paths[0], lambda files: {**files, "../../escape.asice": b"x"})
    report = verify_archive_chain(paths)
    assert report.problems == (
        f"{paths[0].name}: zip entry '../../escape.asice' climbs out of its directory",
    )
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert "not a readable zip" in verify_archive_chain([tmp_path / "junk.zip"]).problems[0]


# --- with the real store ----------------------------------------------------------------------


async def test_records_from_the_real_store_archive_and_verify(tmp_path: Path) -> None:
    """SQLite log of the proxy's own records (tests/logsamples.py), stamped by `openssl ts`,
    archived, and every container verified: signers, identifiers, OCSP status included."""
    logsamples = pytest.importorskip("tests.logsamples")
    sample = await logsamples.build_log(tmp_path / "log")
    try:
        source = ChainArchive(sample.engine, logsamples.GATEWAY, logsamples.NODE)
        paths = Archiver(source, tmp_path / "archives", batch_size=5, clock=ticking_clock()).archive_pending()
        assert len(paths) == 2
        assert source.records_to_archive(10) == []  # only stamped records: the 9th waits
        report = verify_archive_chain(paths, trust=sample.container_trust)
        assert report.valid, report.problems
        assert [check.containers for check in report.archives] == [5, 3]
    finally:
        sample.engine.dispose()


# --- the documented hand check -------------------------------------------------------------


def run_archive_hand_check(directory: Path) -> subprocess.CompletedProcess[str]:
    return run_doc_block("verify-archives", directory)


def test_the_documented_archive_check_passes_and_catches_a_break(
    stored: list[StoredRecord], tmp_path: Path
) -> None:
    paths, _ = archive_all(stored, tmp_path)
    result = run_archive_hand_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("link OK") == 3
    assert f"{paths[0].name}: 2 containers intact, link OK" in result.stdout

    rewrite_archive(paths[1], lambda files: files)  # same contents, new bytes: a different file
    result = run_archive_hand_check(tmp_path)
    assert result.returncode != 0
    assert f"{paths[2].name}: names" in result.stdout


def test_the_documented_archive_check_catches_a_changed_container(
    stored: list[StoredRecord], tmp_path: Path
) -> None:
    paths, _ = archive_all(stored[:2], tmp_path)
    name = zipfile.ZipFile(paths[0]).namelist()[0]
    rewrite_archive(paths[0], lambda files: {**files, name: files[name] + b"\x00"})
    result = run_archive_hand_check(tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_the_documented_archive_check_says_when_there_is_no_archive(tmp_path: Path) -> None:
    result = run_archive_hand_check(tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr  # it was a JSONDecodeError (issue 15)
    assert result.stdout.strip() == f"no xgate-archive-*.zip in {tmp_path}: nothing to check"
