"""Backup and restore of a gateway node (issue 12 item 5): one encrypted, integrity-protected archive.

What a node cannot be rebuilt without: its TOML file, its server configuration (the
registrations, API keys, audit log), its keys and certificates, the federation's anchor, the
message log's and cache's at-rest key files, and the cached global configuration. Not the
message log itself (its archives and signed heads are its own backup, docs/messagelog.md) nor
the cache (copies of answers, refetched).

The archive is a tar of those files and a manifest (each member's SHA-256, size, mode and where
it came from), sealed with AES-256-GCM: the tag covers the whole archive and the header (key
derivation parameters) as associated data, so any change to any byte is refused before a file
is written. The key is scrypt(passphrase) or a 32-byte key file. Everything is built and
opened in memory: no key is ever written unencrypted to a temporary file.

The server configuration: SQLite through the sqlite3 backup API into memory (a consistent copy
while the node runs); PostgreSQL as JSON lines of every table, read in one REPEATABLE READ
transaction, loaded back into an empty database migrated to the same revision.

Restore writes the node into a fresh directory (`--to DIR`): files under the TOML file's
directory keep their places beneath DIR, others go to DIR/external/N/, and the TOML file is
rewritten to name the new places. Private keys get mode 0600, directories 0700.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import secrets
import sqlite3
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy.engine import make_url

from gateway.config import BackupSettings, NodeConfig, load_config
from gateway.configfile import CONFIG_FILE_MODE, DATA_DIR_MODE
from gateway.crypto.keys import write_file_atomically
from gateway.db import begin_snapshot_read, begin_write, is_sqlite
from gateway.serverconf import db as serverconf_db
from gateway.serverconf import tables

log = logging.getLogger(__name__)

MAGIC: Final = b"XGATEBK1"
"""The file's first bytes: an xgate backup, format 1."""
FORMAT: Final = "xgate-backup/1"
SUFFIX: Final = ".xgb"

KEY_BYTES: Final = 32  # AES-256
NONCE_BYTES: Final = 12  # GCM's standard nonce (NIST SP 800-38D §8.2)
SCRYPT_N: Final = 2**15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
"""scrypt's parameters for a passphrase: 32 MiB and ~0.1 s per try (RFC 7914 §2 recommends
N=2^14 or more for interactive use; a backup is opened rarely, so twice that)."""
MAX_HEADER_BYTES: Final = 4096

PRIVATE_FILE_MODE: Final = 0o600
NOT_BACKED_UP: Final = frozenset({"seen_requests"})
"""Tables that are traffic, not configuration: replay guards expire within minutes anyway."""


class BackupError(Exception):
    """A backup cannot be made, opened or restored; the message says why."""


# --- the key --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupKey:
    """A passphrase (stretched with scrypt) or 32 random bytes from a key file."""

    secret: bytes
    from_passphrase: bool

    @classmethod
    def passphrase(cls, text: str) -> BackupKey:
        if not text:
            raise BackupError("the passphrase is empty")
        return cls(text.encode(), True)

    @classmethod
    def key_file(cls, path: Path) -> BackupKey:
        """32 bytes, raw or as 64 hex digits (`head -c 32 /dev/urandom > backup.key`)."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BackupError(f"cannot read key file {path}: {exc.strerror}") from None
        if len(data) != KEY_BYTES:
            try:
                data = bytes.fromhex(data.decode("ascii").strip())
            except (UnicodeDecodeError, ValueError):
                data = b""
        if len(data) != KEY_BYTES:
            raise BackupError(f"key file {path} must hold {KEY_BYTES} bytes (or {2 * KEY_BYTES} hex digits)")
        return cls(data, False)

    def derive(self, header: dict[str, Any]) -> bytes:
        if not self.from_passphrase:
            if header.get("kdf") != "keyfile":
                raise BackupError("this backup was sealed with a passphrase, not a key file")
            return self.secret
        if header.get("kdf") != "scrypt":
            raise BackupError("this backup was sealed with a key file, not a passphrase")
        scrypt = Scrypt(
            salt=base64.b64decode(header["salt"]),
            length=KEY_BYTES,
            n=header["n"],
            r=header["r"],
            p=header["p"],
        )
        return scrypt.derive(self.secret)

    def new_header(self) -> dict[str, Any]:
        if not self.from_passphrase:
            return {"format": FORMAT, "kdf": "keyfile"}
        salt = base64.b64encode(secrets.token_bytes(16)).decode()
        return {"format": FORMAT, "kdf": "scrypt", "salt": salt, "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}


def seal(plain: bytes, key: BackupKey) -> bytes:
    """MAGIC, the header's length and JSON, the nonce, then AES-256-GCM over `plain` (header as AAD)."""
    header = json.dumps(key.new_header(), sort_keys=True).encode()
    prefix = MAGIC + len(header).to_bytes(4, "big") + header
    nonce = secrets.token_bytes(NONCE_BYTES)
    return prefix + nonce + AESGCM(key.derive(json.loads(header))).encrypt(nonce, plain, prefix)


def unseal(data: bytes, key: BackupKey) -> bytes:
    """The archive inside `data`, or BackupError if anything in the file was changed or the key is wrong."""
    if not data.startswith(MAGIC):
        raise BackupError("not an xgate backup (format 1)")
    size = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "big")
    if size > MAX_HEADER_BYTES:
        raise BackupError("the backup's header is damaged")
    end = len(MAGIC) + 4 + size
    try:
        header = json.loads(data[len(MAGIC) + 4 : end])
    except ValueError:
        raise BackupError("the backup's header is damaged") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError("the backup's header is damaged or of another format")
    nonce, sealed = data[end : end + NONCE_BYTES], data[end + NONCE_BYTES :]
    try:
        return AESGCM(key.derive(header)).decrypt(nonce, sealed, data[:end])
    except (InvalidTag, ValueError, KeyError):
        raise BackupError(
            "the backup does not open: wrong passphrase or key, or the file was changed"
        ) from None


# --- what goes in ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One file of the archive: its name inside, its bytes, and what it is."""

    name: str
    data: bytes
    mode: int
    origin: str  # the absolute path it came from ("" for generated ones)
    role: str  # config, serverconf-sqlite, serverconf-rows, key, file


def _file_roles(config: NodeConfig) -> Iterator[tuple[Path, str]]:
    """The files the node's configuration names that a restore needs, with their role."""
    identities = [config.auth_tls, *([config.internal_tls] if config.internal_tls else [])]
    for tls in identities:
        yield tls.cert, "file"
        yield tls.key, "key"
    for signing in config.signing_keys:
        yield signing.cert, "file"
        yield signing.key, "key"
    yield config.globalconf_anchor, "file"
    if config.messagelog is not None and config.messagelog.body_key_file is not None:
        yield config.messagelog.body_key_file, "key"
    if config.cache is not None and config.cache.body_key_file is not None:
        yield config.cache.body_key_file, "key"
    if config.globalconf_cache.exists():
        yield config.globalconf_cache, "file"


class _Names:
    """Archive names for absolute paths: beneath the TOML file's directory (node/) or the data
    directory (data/) as they lie, others under external/N/ (so two keys called auth.key from
    different places never collide)."""

    def __init__(self, config_dir: Path, data_dir: Path) -> None:
        self.config_dir = config_dir
        self.data_dir = data_dir
        self.external: dict[Path, str] = {}

    def name(self, path: Path) -> str:
        path = path.resolve()
        if path.is_relative_to(self.config_dir):
            return "node/" + path.relative_to(self.config_dir).as_posix()
        if path.is_relative_to(self.data_dir):
            return "data/" + path.relative_to(self.data_dir).as_posix()
        if path not in self.external:
            self.external[path] = f"external/{len(self.external)}/{path.name}"
        return self.external[path]


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory database cannot be backed up")
    return Path(parsed.database)


def sqlite_copy(path: Path) -> bytes:
    """A consistent image of a live SQLite database (its backup API), made in memory."""
    if not path.exists():
        raise BackupError(f"the database {path} does not exist")
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    target = sqlite3.connect(":memory:")
    try:
        source.backup(target)
        return target.serialize()
    finally:
        target.close()
        source.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime):
        return {"$time": value.isoformat()}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        if "$bytes" in value:
            return base64.b64decode(value["$bytes"])
        if "$time" in value:
            return dt.datetime.fromisoformat(value["$time"])
    return value


def _backed_up_tables() -> list[sa.Table]:
    return [table for table in tables.metadata.sorted_tables if table.name not in NOT_BACKED_UP]


def database_rows(url: str) -> tuple[bytes, str]:
    """Every configuration table as JSON lines (`{"table": ..., "row": {...}}`), read in one
    snapshot, and the schema revision they belong to."""
    engine = serverconf_db.create_engine(url)
    lines: list[bytes] = []
    try:
        with begin_snapshot_read(engine) as connection:
            revision = _revision(connection)
            for table in _backed_up_tables():
                for row in connection.execute(sa.select(table)).mappings():
                    record = {"table": table.name, "row": {k: _jsonable(v) for k, v in row.items()}}
                    lines.append(json.dumps(record, sort_keys=True).encode())
    finally:
        engine.dispose()
    return b"\n".join(lines) + b"\n", revision


def _revision(connection: sa.Connection) -> str:
    version = sa.table(serverconf_db.ALEMBIC_VERSION_TABLE, sa.column("version_num", sa.String))
    found = connection.scalar(sa.select(version.c.version_num))
    if found is None:
        raise BackupError("the server configuration database has never been migrated")
    return str(found)


def collect(config_path: Path) -> tuple[list[Member], dict[str, Any]]:
    """The node's members and the manifest's description of its database."""
    config_path = config_path.resolve()
    config = load_config(config_path)
    names = _Names(config_path.parent, config.data_dir.resolve())
    members = [
        Member(
            names.name(config_path), config_path.read_bytes(), CONFIG_FILE_MODE, str(config_path), "config"
        )
    ]
    database_file = sqlite_path(config.database_url)
    if database_file is not None:
        database = {"backend": "sqlite", "member": names.name(database_file)}
        data = sqlite_copy(database_file)
        members.append(
            Member(
                database["member"], data, PRIVATE_FILE_MODE, str(database_file.resolve()), "serverconf-sqlite"
            )
        )
    else:
        rows, revision = database_rows(config.database_url)
        database = {"backend": "postgresql", "member": "serverconf.jsonl", "revision": revision}
        members.append(Member("serverconf.jsonl", rows, PRIVATE_FILE_MODE, "", "serverconf-rows"))
    seen = {member.name for member in members}
    for path, role in _file_roles(config):
        name = names.name(path)
        if name in seen:
            continue
        seen.add(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BackupError(f"cannot read {path}: {exc.strerror}") from None
        mode = PRIVATE_FILE_MODE if role == "key" else 0o644
        members.append(Member(name, data, mode, str(path.resolve()), role))
    extra = {
        "server_id": config.server_id.to_text(),
        "config_dir": str(config_path.parent),
        "data_dir": str(config.data_dir.resolve()),
        "database": database,
    }
    return members, extra


def archive(members: list[Member], extra: dict[str, Any], created: dt.datetime) -> bytes:
    """The tar: manifest.json first (every member's SHA-256), then the members."""
    manifest = {
        "format": FORMAT,
        "created_at": created.isoformat(),
        **extra,
        "members": [
            {
                "name": m.name,
                "sha256": hashlib.sha256(m.data).hexdigest(),
                "size": len(m.data),
                "mode": m.mode,
                "origin": m.origin,
                "role": m.role,
            }
            for m in members
        ],
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in [("manifest.json", json.dumps(manifest, indent=2).encode())] + [
            (m.name, m.data) for m in members
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = int(created.timestamp())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_backup(config_path: Path, key: BackupKey, *, now: dt.datetime | None = None) -> bytes:
    """The node's backup file's bytes (sealed)."""
    members, extra = collect(config_path)
    return seal(archive(members, extra, now or dt.datetime.now(dt.UTC)), key)


def write_backup(config_path: Path, key: BackupKey, output: Path) -> Path:
    write_file_atomically(output, make_backup(config_path, key), PRIVATE_FILE_MODE)
    return output


# --- opening and restoring ----------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedBackup:
    manifest: dict[str, Any]
    files: dict[str, bytes]  # by archive name, each checked against the manifest


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if (
        path.is_absolute()
        or ".." in path.parts
        or not path.parts
        or path.parts[0] not in ("node", "data", "external", "serverconf.jsonl")
    ):
        raise BackupError(f"the backup names a file outside its tree: {name!r}")
    return path


def open_backup(data: bytes, key: BackupKey) -> OpenedBackup:
    """The archive's manifest and files, each file's digest and size checked."""
    plain = unseal(data, key)
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
        for info in tar.getmembers():
            if not info.isfile():
                raise BackupError(f"the backup holds something other than a file: {info.name!r}")
            extracted = tar.extractfile(info)
            assert extracted is not None
            files[info.name] = extracted.read()
    manifest = json.loads(files.pop("manifest.json", b"null"))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("the backup has no manifest of format 1")
    listed = {entry["name"]: entry for entry in manifest["members"]}
    if set(listed) != set(files):
        raise BackupError("the backup's files are not those its manifest lists")
    for name, entry in listed.items():
        _safe_name(name)
        digest = hashlib.sha256(files[name]).hexdigest()
        if digest != entry["sha256"] or len(files[name]) != entry["size"]:
            raise BackupError(f"{name} does not match its digest in the manifest")
    return OpenedBackup(manifest, files)


def _target(directory: Path, name: str) -> Path:
    path = _safe_name(name)
    if path.parts[0] == "node":
        return directory.joinpath(*path.parts[1:])
    return directory.joinpath(*path.parts)


def _make_dirs(directory: Path, path: Path) -> None:
    for parent in reversed(path.parents):
        if parent.is_relative_to(directory) and not parent.exists():
            parent.mkdir(mode=DATA_DIR_MODE)


def restore(data: bytes, key: BackupKey, directory: Path, *, database_url: str | None = None) -> Path:
    """The backed-up node in `directory` (which must hold no node yet); its TOML file's path.

    A PostgreSQL archive is loaded into `database_url` (default: the URL the TOML file names),
    which must be empty of xgate's server configuration.
    """
    opened = open_backup(data, key)
    manifest = opened.manifest
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        raise BackupError(f"{directory} is not empty: restore into a fresh directory")
    directory.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    config_entry = next(entry for entry in manifest["members"] if entry["role"] == "config")
    text = opened.files[config_entry["name"]].decode("utf-8")
    replacements: list[tuple[str, str]] = []
    for entry in manifest["members"]:
        target = _target(directory, entry["name"])
        if entry["role"] == "serverconf-rows":
            continue
        _make_dirs(directory, target)
        mode = PRIVATE_FILE_MODE if entry["role"] in ("key", "serverconf-sqlite") else entry["mode"] & 0o644
        if entry["role"] != "config":
            write_file_atomically(target, opened.files[entry["name"]], mode)
        if entry["name"].startswith("external/") and entry["origin"]:
            replacements.append((entry["origin"], str(target)))
    replacements.append((manifest["config_dir"], str(directory)))
    if not Path(manifest["data_dir"]).is_relative_to(manifest["config_dir"]):
        replacements.append((manifest["data_dir"], str(directory / "data")))
    text = _replace_paths(text, dict(replacements))
    config_path = _target(directory, config_entry["name"])
    _make_dirs(directory, config_path)
    write_file_atomically(config_path, text.encode("utf-8"), CONFIG_FILE_MODE)
    if manifest["database"]["backend"] == "postgresql":
        url = database_url or load_config(config_path).database_url
        load_rows(url, opened.files["serverconf.jsonl"], manifest["database"]["revision"])
    return config_path


def _replace_paths(text: str, new_paths: dict[str, str]) -> str:
    """Every old path in `text` replaced by its new one in one pass, longest first, so neither a
    shorter path inside a longer one nor a path already replaced is replaced again."""
    pattern = re.compile("|".join(re.escape(old) for old in sorted(new_paths, key=len, reverse=True)))
    return pattern.sub(lambda match: new_paths[match.group(0)], text)


def load_rows(url: str, rows: bytes, revision: str) -> None:
    """JSON lines of :func:`database_rows` into an empty database at `url`: migrated to the
    archive's revision, filled in one transaction, then migrated to this release's head."""
    serverconf_db.migrate(url, revision)
    engine = serverconf_db.create_engine(url)
    by_table = {table.name: table for table in _backed_up_tables()}
    try:
        with begin_write(engine) as connection:
            for table in by_table.values():
                if table.name not in ("config_version",) and connection.scalar(
                    sa.select(sa.func.count()).select_from(table)
                ):
                    raise BackupError(
                        f"{url}: table {table.name} is not empty; restore into an empty database"
                    )
            connection.execute(sa.delete(tables.config_version))
            for line in rows.splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                table = by_table[record["table"]]
                connection.execute(
                    sa.insert(table).values({k: _from_json(v) for k, v in record["row"].items()})
                )
            if not is_sqlite(connection):
                for table in by_table.values():
                    if (
                        "id" in table.c
                        and table.c.id.autoincrement is not False
                        and table.name != "config_version"
                    ):
                        connection.execute(
                            sa.text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608 - our table names
                                f"GREATEST((SELECT max(id) FROM {table.name}), 1))"
                            )
                        )
    finally:
        engine.dispose()
    serverconf_db.migrate(url)


# --- scheduled backups --------------------------------------------------------------------------


def schedule_key(settings: BackupSettings) -> BackupKey:
    """The key [backup] names: its key file, or the passphrase in its environment variable."""
    if settings.key_file is not None:
        return BackupKey.key_file(settings.key_file)
    assert settings.passphrase_env is not None  # the section requires one of them
    return BackupKey.passphrase(os.environ.get(settings.passphrase_env, ""))


def backup_name(server_id: str, when: dt.datetime) -> str:
    """Sortable by time: SERVER-20261206T174500123456Z.xgb (the server id's slashes as dashes)."""
    return f"{server_id.replace('/', '-')}-{when.strftime('%Y%m%dT%H%M%S%fZ')}{SUFFIX}"


def scheduled_backup(config_path: Path, server_id: str, schedule: BackupSettings, when: dt.datetime) -> Path:
    """One backup into the schedule's directory, then all but the newest `keep` removed."""
    schedule.directory.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    written = write_backup(
        config_path, schedule_key(schedule), schedule.directory / backup_name(server_id, when)
    )
    prefix = server_id.replace("/", "-") + "-"
    kept = sorted(
        p for p in schedule.directory.iterdir() if p.name.startswith(prefix) and p.name.endswith(SUFFIX)
    )
    for old in kept[: max(0, len(kept) - schedule.keep)]:
        old.unlink()
    return written


async def run_schedule(config_path: Path, server_id: str, schedule: BackupSettings) -> None:
    """Back up every `interval_seconds` until cancelled; a failed backup is logged and retried next time."""
    while True:
        await asyncio.sleep(schedule.interval_seconds)
        try:
            path = await asyncio.to_thread(
                scheduled_backup, config_path, server_id, schedule, dt.datetime.now(dt.UTC)
            )
            log.info("backup written: %s", path)
        except (BackupError, OSError, sa.exc.SQLAlchemyError) as exc:
            log.error("scheduled backup failed: %s", exc)
