"""Reading a zip safely: a container comes from wherever an officer found it, so it is untrusted."""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import Final

from gateway.messagelog.asice.layout import (
    CONTAINER_NAMES,
    MAX_CONTAINER_BYTES,
    MAX_ENTRIES,
    MAX_EVIDENCE_FILE_BYTES,
    MAX_MESSAGE_FILE_BYTES,
    MAX_UNCOMPRESSED_BYTES,
    MEDIA_TYPE,
    MESSAGE_BIN,
    MESSAGE_XML,
    MIMETYPE,
    REST_REQUEST,
    REST_RESPONSE,
    ContainerError,
)

# --- reading a zip safely ------------------------------------------------------------------


@dataclass(frozen=True)
class ZipLimits:
    """Bounds on what reading an untrusted zip may cost (zip bombs, huge directories)."""

    max_bytes: int = MAX_CONTAINER_BYTES
    max_entries: int = MAX_ENTRIES
    max_entry_bytes: int = MAX_MESSAGE_FILE_BYTES
    max_total_bytes: int = MAX_UNCOMPRESSED_BYTES


DEFAULT_ZIP_LIMITS: Final = ZipLimits()
"""The default limits, one shared value (ZipLimits is frozen)."""


def checked_entries(archive: zipfile.ZipFile, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    """The entries of `archive`, once their names and declared sizes are known to be safe.

    Refuses path traversal and absolute names (zip-slip: an unzip would write outside its
    directory), duplicate names (two readers could pick different ones), directories,
    encryption, and declared sizes over the limits. Real sizes are bounded again while
    reading (:func:`read_entry`): declared sizes are only the attacker's word.
    """
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise ContainerError(f"zip has {len(infos)} entries, more than {limits.max_entries}")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\\" in name:
            raise ContainerError(f"zip entry {name!r} has an absolute or non-portable path")
        if ".." in name.split("/") or "\x00" in name:
            raise ContainerError(f"zip entry {name!r} climbs out of its directory")
        if name in seen:
            raise ContainerError(f"zip entry {name!r} appears twice")
        seen.add(name)
        if info.is_dir():
            raise ContainerError(f"zip entry {name!r} is a directory")
        if info.flag_bits & 0x1:
            raise ContainerError(f"zip entry {name!r} is encrypted")
        if info.file_size > limits.max_entry_bytes:
            raise ContainerError(f"zip entry {name!r} declares {info.file_size} bytes, over the limit")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ContainerError(f"zip entries declare more than {limits.max_total_bytes} bytes in all")
    return infos


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> bytes:
    """An entry's bytes, reading at most `max_bytes` whatever its header says (zip bombs)."""
    try:
        with archive.open(info) as stream:
            data = stream.read(max_bytes + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ContainerError(f"zip entry {info.filename!r} cannot be read: {exc}") from exc
    if len(data) > max_bytes:
        raise ContainerError(f"zip entry {info.filename!r} expands beyond {max_bytes} bytes")
    return data


def read_container(data: bytes, limits: ZipLimits = ZipLimits()) -> dict[str, bytes]:
    """The files of a container, after the zip-level rules of ASiC-E and of safety are checked."""
    if len(data) > limits.max_bytes:
        raise ContainerError(f"container of {len(data)} bytes is over the {limits.max_bytes}-byte limit")
    _check_mimetype_header(data)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ContainerError(f"not a readable zip: {exc}") from exc
    with archive:
        infos = checked_entries(archive, limits)
        if not infos or infos[0].filename != MIMETYPE or infos[0].header_offset != 0:
            raise ContainerError("mimetype must be the first entry")
        unknown = sorted(info.filename for info in infos if info.filename not in CONTAINER_NAMES)
        if unknown:
            raise ContainerError(f"unexpected files in the container: {', '.join(unknown)}")
        for info in infos:
            _check_local_header(data, info)
        files: dict[str, bytes] = {}
        total = 0
        for info in infos:
            limit = limits.max_entry_bytes if _is_message_file(info.filename) else MAX_EVIDENCE_FILE_BYTES
            files[info.filename] = read_entry(archive, info, min(limit, limits.max_total_bytes - total))
            total += len(files[info.filename])
    if files[MIMETYPE] != MEDIA_TYPE.encode("ascii"):
        raise ContainerError(f"mimetype must be {MEDIA_TYPE}")
    if MESSAGE_XML in files and MESSAGE_BIN in files:
        raise ContainerError("a container holds one message file, not two")
    return files


def _check_local_header(data: bytes, info: zipfile.ZipInfo) -> None:
    """An entry's local header (APPNOTE 4.3.7) says what the central directory says of it.

    zipfile reads sizes from the central directory, `unzip` and other tools may read the local
    header: where the two disagree, two readers see different files, so such a zip is refused.
    """
    start = info.header_offset
    header = data[start : start + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise ContainerError(f"zip entry {info.filename!r} has no local header where the directory says")
    flags, method = int.from_bytes(header[6:8], "little"), int.from_bytes(header[8:10], "little")
    name_length = int.from_bytes(header[26:28], "little")
    name = data[start + 30 : start + 30 + name_length]
    if name != info.filename.encode("utf-8") or method != info.compress_type:
        raise ContainerError(f"zip entry {info.filename!r}: its local header names another file or method")
    if flags & 0x08:
        return  # sizes and CRC follow the data (a data descriptor); zipfile checks the CRC on reading
    crc, compressed, size = (int.from_bytes(header[i : i + 4], "little") for i in (14, 18, 22))
    if (crc, compressed, size) != (info.CRC, info.compress_size, info.file_size):
        raise ContainerError(f"zip entry {info.filename!r}: its local header and the directory disagree")


def _is_message_file(name: str) -> bool:
    return name in (MESSAGE_XML, MESSAGE_BIN, REST_REQUEST, REST_RESPONSE)


def _check_mimetype_header(data: bytes) -> None:
    """EN 319 162-1 Annex A: the first local header is `mimetype`, stored, without an extra field.

    Read from the raw bytes (offset 30 is the name, 38 the content) because that is exactly
    what sniffing tools read, and zipfile would not tell us about the local extra field.
    """
    media_type = MEDIA_TYPE.encode("ascii")
    if len(data) < 38 + len(media_type) or data[:4] != b"PK\x03\x04":
        raise ContainerError("not a zip file (no local file header at the start)")
    method = int.from_bytes(data[8:10], "little")
    name_length = int.from_bytes(data[26:28], "little")
    extra_length = int.from_bytes(data[28:30], "little")
    if data[30 : 30 + name_length] != MIMETYPE.encode("ascii"):
        raise ContainerError("mimetype must be the first entry")
    if method != zipfile.ZIP_STORED or extra_length != 0:
        raise ContainerError("mimetype must be stored uncompressed and without an extra field")
    if data[38 : 38 + len(media_type)] != media_type:
        raise ContainerError(f"mimetype must be {MEDIA_TYPE}")
