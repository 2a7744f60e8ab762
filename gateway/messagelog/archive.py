"""Archives of the message log: containers written to chained zip files, then marked archived.

The log's database is for searching recent traffic; evidence is kept for years in archive
files that anyone can check without xgate (docs/verification.md). An archive file is a zip:

    index.json                          what the archive holds, and the digest of the one before
    000000000042-1a2b3c4d5e6f7a8b.asice one ASiC-E container per record (gateway.messagelog.asice), named by
    ...                                 its chain seq and the start of its record hash

`index.json` (ARCHIVE_FORMAT; JSON, keys sorted, indented) lists every container with its
SHA-256, size and identifying fields, and `previous_archive_sha256`: the SHA-256 of the
previous archive file of this directory (null for the first). Archives therefore chain like
the records inside them: a deleted, replaced or edited archive breaks the link of the next one
(:func:`verify_archive_chain`, or `sha256sum` by hand).

The store provides `records_to_archive(limit)` and `mark_archived(seqs, archive_name)`
(:class:`ArchiveSource`). Records are marked only after their archive is durably on disk and
the chain head recorded, so a crash can at worst archive a record twice, never lose one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import subprocess
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from cryptography import x509

from gateway.crypto.keys import write_file_atomically
from gateway.messagelog.asice import (
    MAX_CONTAINER_BYTES,
    ContainerError,
    ContainerReport,
    LoggedMessage,
    ZipLimits,
    build_container,
    checked_entries,
    decode_proof,
    read_entry,
    verify_container,
    zip_date_time,
)
from gateway.messagelog.evidence import DEFAULT_STATUS_POLICY, StatusPolicy
from gateway.messagelog.record import LogRecord

log = logging.getLogger(__name__)

ARCHIVE_FORMAT: Final = "xgate-archive/1"
INDEX_NAME: Final = "index.json"
ARCHIVE_PREFIX: Final = "xgate-archive"
CHAIN_HEAD_FILE: Final = ".xgate-archive-head.json"
"""Name and digest of the last archive written, kept so the chain survives a hook that moves archives away."""

ARCHIVE_FILE_MODE: Final = 0o640
"""Archives hold message bodies: readable by the gateway's group (backup, the hook), not by all."""

DEFAULT_BATCH_SIZE: Final = 1000
"""Records per archive: a day of a quiet gateway, a few minutes of a busy one; ~10 MB of SOAP."""

DEFAULT_HOOK_TIMEOUT_SECONDS: Final = 300.0
"""Time for the hook to copy an archive away (a few hundred MB over a slow link), then it is killed."""

MAX_ARCHIVE_ENTRIES: Final = 100_000
"""Containers in one archive we are willing to read: a hundred times the default batch."""

MAX_INDEX_BYTES: Final = 64 * 1024 * 1024
"""index.json lists ~300 bytes per container: 64 MB covers MAX_ARCHIVE_ENTRIES with room to spare."""

MAX_HOOK_OUTPUT_LOGGED: Final = 2000
"""Characters of a failed hook's output put in the log: enough to see why, not a flood."""

_HASH_CHUNK: Final = 1024 * 1024
_CONTAINER_NAME = re.compile(r"[0-9]{12,}-[0-9a-f]{16}\.asice")


# --- what the store gives us --------------------------------------------------------------


class StampedBatch(Protocol):
    """The timestamp of a batch of records (store.StoredTimestamp): its RFC 3161 token."""

    @property
    def token(self) -> bytes: ...


class ArchivableRecord(Protocol):
    """A stored record with its evidence, as `records_to_archive` returns it (store.StoredRecord).

    `timestamp_proof_json` is the path from `record_hash` to the batch root `timestamp.token`
    stamps, in PROOF_FORMAT (asice.encode_proof).
    """

    @property
    def seq(self) -> int: ...

    @property
    def record(self) -> LogRecord: ...

    @property
    def prev_hash(self) -> bytes: ...

    @property
    def record_hash(self) -> bytes: ...

    @property
    def timestamp(self) -> StampedBatch | None: ...

    @property
    def timestamp_proof_json(self) -> str | None: ...

    @property
    def log_signature(self) -> bytes | None: ...

    @property
    def log_signature_proof_json(self) -> str | None: ...


class ArchiveSource(Protocol):
    """The message-log store, as far as archiving needs it."""

    def records_to_archive(self, limit: int) -> Sequence[ArchivableRecord]: ...

    def mark_archived(self, seqs: Sequence[int], archive_name: str) -> object: ...


def logged_message(item: ArchivableRecord) -> LoggedMessage:
    """The container input for one stored record; refuses a record whose stored hash is not its own."""
    proof_json = item.timestamp_proof_json
    message = LoggedMessage(
        record=item.record,
        prev_hash=item.prev_hash,
        timestamp_token=None if item.timestamp is None else item.timestamp.token,
        timestamp_proof=None if proof_json is None else decode_proof(proof_json).steps,
        log_signature=item.log_signature,
        log_signature_proof=item.log_signature_proof_json,
    )
    if message.record_hash != item.record_hash:
        raise ValueError(f"record {item.seq}: its stored hash is not the hash of its content")
    return message


# --- the index (sans-IO) ------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerEntry:
    """One container of an archive, as index.json lists it."""

    name: str
    seq: int
    sha256: str
    size: int
    gateway: str
    message_id: str
    exchange_id: str
    direction: str
    logged_at: str
    record_hash: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def container_entry(seq: int, message: LoggedMessage, container: bytes) -> ContainerEntry:
    record_hash = message.record_hash.hex()
    fields = message.record.content_fields()
    return ContainerEntry(
        name=f"{seq:012d}-{record_hash[:16]}.asice",
        seq=seq,
        sha256=hashlib.sha256(container).hexdigest(),
        size=len(container),
        gateway=message.record.gateway,
        message_id=message.record.message_id,
        exchange_id=message.record.exchange_id,
        direction=fields["direction"],
        logged_at=fields["logged_at"],
        record_hash=record_hash,
    )


def build_index(
    entries: Sequence[ContainerEntry], previous_archive_sha256: str | None, created_at: dt.datetime
) -> bytes:
    """index.json: the containers in archive order and the link to the previous archive."""
    document = {
        "format": ARCHIVE_FORMAT,
        "created_at": created_at.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "previous_archive_sha256": previous_archive_sha256,
        "containers": [entry.to_json() for entry in entries],
    }
    return (json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def archive_name(created_at: dt.datetime, first_seq: int) -> str:
    """Sortable by creation time, so the directory listing is the chain order."""
    stamp = created_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{ARCHIVE_PREFIX}-{stamp}-{first_seq:012d}.zip"


# --- writing archives (the I/O edge) --------------------------------------------------------


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Archiver:
    """Moves records from the store into chained archive files in `directory`.

    Blocking (file writes, the store's own calls, the hook): run it in a worker thread.
    """

    def __init__(
        self,
        source: ArchiveSource,
        directory: Path,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        hook: Sequence[str] | None = None,
        hook_timeout: float = DEFAULT_HOOK_TIMEOUT_SECONDS,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        if batch_size < 1 or hook_timeout <= 0:
            raise ValueError("batch_size must be >= 1 and hook_timeout > 0")
        if hook is not None and not hook:
            raise ValueError("an archive hook is a command: a non-empty list of arguments")
        self._source = source
        self._directory = Path(directory)
        self._batch_size = batch_size
        self._hook = list(hook) if hook is not None else None
        self._hook_timeout = hook_timeout
        self._clock = clock

    def archive_once(self) -> Path | None:
        """Archive up to one batch of records; the archive's path, or None when nothing was waiting."""
        items = list(self._source.records_to_archive(self._batch_size))
        if not items:
            return None
        path = self._write_archive(items)
        self._source.mark_archived([item.seq for item in items], path.name)
        log.info("archived %d records to %s", len(items), path)
        if self._hook is not None:
            self._run_hook(path)
        return path

    def archive_pending(self, max_archives: int = 1000) -> list[Path]:
        """Archive batch after batch until the store has nothing left (or `max_archives` are written)."""
        paths: list[Path] = []
        while len(paths) < max_archives:
            path = self.archive_once()
            if path is None:
                break
            paths.append(path)
        return paths

    def _write_archive(self, items: Sequence[ArchivableRecord]) -> Path:
        """Write the zip under a temporary name, make it durable, rename it, then record the chain head."""
        self._directory.mkdir(parents=True, exist_ok=True)
        created_at = self._clock()
        name = archive_name(created_at, items[0].seq)
        previous = self._previous_archive()
        if previous is not None and name <= previous[0]:
            # Names are the chain order; an archive named before its predecessor would break it.
            raise ValueError(
                f"the clock is behind the last archive {previous[0]}: not archiving until it is not"
            )
        final = self._directory / name
        partial = self._directory / f".{name}.partial"
        entries: list[ContainerEntry] = []
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ARCHIVE_FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                with zipfile.ZipFile(handle, "w") as archive:
                    for item in items:
                        message = logged_message(item)
                        container = build_container(message)
                        entry = container_entry(item.seq, message, container)
                        if any(e.name == entry.name for e in entries):
                            raise ValueError(f"two records to archive share the name {entry.name}")
                        # Containers are compressed inside already: store them as they are.
                        archive.writestr(_zip_info(entry.name, created_at), container, zipfile.ZIP_STORED)
                        entries.append(entry)
                    index = build_index(entries, None if previous is None else previous[1], created_at)
                    archive.writestr(_zip_info(INDEX_NAME, created_at), index, zipfile.ZIP_DEFLATED)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        # Writing the head fsyncs this directory, which makes the rename above durable too.
        head = {"name": name, "sha256": file_sha256(final)}
        write_file_atomically(self._directory / CHAIN_HEAD_FILE, json.dumps(head).encode() + b"\n", 0o644)
        return final

    def _previous_archive(self) -> tuple[str, str] | None:
        """Name and SHA-256 of the archive the next one follows: the newest here, or the recorded head.

        The head file is what lets the chain continue after a hook moved archives elsewhere; an
        archive newer than the head (a crash between the rename and the head update) wins.
        """
        head: tuple[str, str] | None = None
        head_path = self._directory / CHAIN_HEAD_FILE
        if head_path.exists():
            recorded = json.loads(head_path.read_bytes())
            head = (str(recorded["name"]), str(recorded["sha256"]))
        archives = sorted(self._directory.glob(f"{ARCHIVE_PREFIX}-*.zip"))
        if archives and (head is None or archives[-1].name > head[0]):
            return archives[-1].name, file_sha256(archives[-1])
        return head

    def _run_hook(self, path: Path) -> None:
        """Run the hook with the archive's path; a failure is logged, and the archive stays where it is."""
        assert self._hook is not None
        command = [*self._hook, str(path)]
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self._hook_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:  # subprocess.run has killed it
            log.error("archive hook %s timed out after %ss; %s is kept", command[0], self._hook_timeout, path)
            return
        except OSError as exc:
            log.error("archive hook %s could not start: %s; %s is kept", command[0], exc, path)
            return
        if result.returncode != 0:
            text = result.stdout.decode("utf-8", "replace")[-MAX_HOOK_OUTPUT_LOGGED:]
            log.error("archive hook %s exited %s for %s: %s", command[0], result.returncode, path, text)


def _zip_info(name: str, created_at: dt.datetime) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, zip_date_time(created_at))
    info.external_attr = 0o644 << 16
    return info


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks (archives can be large): what `sha256sum` prints."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- verifying archives -------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerTrust:
    """What it takes to verify the containers inside archives, not only the archives' chain."""

    trusted_cas: Sequence[x509.Certificate]
    trusted_tsa_certs: Sequence[x509.Certificate]
    tsa_ca_certs: Sequence[x509.Certificate] | None = None  # CAs whose TSAs count too; None: pinned only
    status: StatusPolicy = DEFAULT_STATUS_POLICY  # how signers' OCSP status must be shown

    def verify(self, container: bytes, *, require_record_signature: bool = False) -> ContainerReport:
        """One container checked completely against this trust (asice.verify_container)."""
        return verify_container(
            container,
            trusted_cas=self.trusted_cas,
            trusted_tsa_certs=self.trusted_tsa_certs,
            tsa_ca_certs=self.tsa_ca_certs,
            status_policy=self.status,
            require_record_signature=require_record_signature,
        )


@dataclass(frozen=True)
class ArchiveCheck:
    """One archive file: its digest, the digest it names as its predecessor, and what is wrong."""

    path: Path
    sha256: str
    previous_archive_sha256: str | None
    containers: int
    problems: tuple[str, ...]


@dataclass(frozen=True)
class ArchiveChainReport:
    archives: tuple[ArchiveCheck, ...]

    @property
    def valid(self) -> bool:
        return all(not archive.problems for archive in self.archives)

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(f"{a.path.name}: {problem}" for a in self.archives for problem in a.problems)


_ARCHIVE_LIMITS: Final = ZipLimits(
    max_entries=MAX_ARCHIVE_ENTRIES + 1,
    max_entry_bytes=max(MAX_CONTAINER_BYTES, MAX_INDEX_BYTES),
    max_total_bytes=(MAX_ARCHIVE_ENTRIES + 1) * MAX_CONTAINER_BYTES,
)


def verify_archive_chain(
    paths: Sequence[Path],
    *,
    trust: ContainerTrust | None = None,
    checked: Callable[[Path], None] | None = None,
) -> ArchiveChainReport:
    """Check archives in chain order: each one's index, contents and link to the one before.

    Every listed container must be present with its digest and nothing else may be; each
    archive after the first must name the SHA-256 of the previous file. The first archive's
    link cannot be checked without its predecessor (it is null for the very first archive).
    With `trust`, every container is also verified completely (asice.verify_container).
    `checked` is called after each archive (a progress line: each takes a while).
    """
    checks: list[ArchiveCheck] = []
    previous_sha256: str | None = None
    for position, path in enumerate(paths):
        digest = file_sha256(path)
        problems: list[str] = []
        try:
            named_previous, containers = _check_archive(path, trust, problems)
        except ContainerError as exc:
            checks.append(ArchiveCheck(path, digest, None, 0, (str(exc),)))
            previous_sha256 = digest
            if checked is not None:
                checked(path)
            continue
        if position > 0 and named_previous != previous_sha256:
            problems.insert(
                0,
                f"names {named_previous} as its predecessor, "
                f"but {paths[position - 1].name} is {previous_sha256}",
            )
        checks.append(ArchiveCheck(path, digest, named_previous, containers, tuple(problems)))
        previous_sha256 = digest
        if checked is not None:
            checked(path)
    return ArchiveChainReport(tuple(checks))


def _check_archive(path: Path, trust: ContainerTrust | None, problems: list[str]) -> tuple[str | None, int]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ContainerError(f"not a readable zip: {exc}") from exc
    with archive:
        infos = {info.filename: info for info in checked_entries(archive, _ARCHIVE_LIMITS)}
        if INDEX_NAME not in infos:
            raise ContainerError(f"the archive has no {INDEX_NAME}")
        index = _read_index(read_entry(archive, infos[INDEX_NAME], MAX_INDEX_BYTES))
        listed = {entry["name"]: entry for entry in index["containers"]}
        present = set(infos) - {INDEX_NAME}
        if set(listed) != present:
            missing, unlisted = sorted(set(listed) - present), sorted(present - set(listed))
            problems.append(f"index.json and the files differ: missing {missing}, unlisted {unlisted}")
        for name in sorted(set(listed) & present):
            container = read_entry(archive, infos[name], MAX_CONTAINER_BYTES)
            if hashlib.sha256(container).hexdigest() != listed[name]["sha256"]:
                problems.append(f"{name} does not match its digest in index.json")
                continue
            if trust is not None:
                report = trust.verify(container)
                problems.extend(f"{name}: {problem}" for problem in report.problems)
    return index["previous_archive_sha256"], len(listed)


def _read_index(data: bytes) -> dict[str, Any]:
    """index.json, with the fields the chain check relies on in the shape we write."""
    try:
        index = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise ContainerError(f"index.json is not JSON: {exc}") from exc
    if not isinstance(index, dict) or index.get("format") != ARCHIVE_FORMAT:
        raise ContainerError(f"index.json is not an {ARCHIVE_FORMAT} index")
    previous = index.get("previous_archive_sha256")
    if previous is not None and not (isinstance(previous, str) and re.fullmatch(r"[0-9a-f]{64}", previous)):
        raise ContainerError("index.json previous_archive_sha256 must be null or 64 hex digits")
    containers = index.get("containers")
    if not isinstance(containers, list) or not all(
        isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and _CONTAINER_NAME.fullmatch(entry["name"])
        and isinstance(entry.get("sha256"), str)
        for entry in containers
    ):
        raise ContainerError("index.json containers must each have a container name and a sha256")
    if len({entry["name"] for entry in containers}) != len(containers):
        raise ContainerError("index.json lists a container twice")
    return index
