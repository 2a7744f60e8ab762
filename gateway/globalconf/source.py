"""Where a gateway gets its global configuration: fetch, verify, keep the last good copy.

The I/O edge around `signed.py`. A :class:`GlobalConfSource` reads the signed configuration
from a file or an http(s) URL, verifies it against the anchor, refuses to go back to an
older version, and stores what it accepted (the signed bytes, so they can be re-verified) in
a cache file, replaced atomically. Anything that fails leaves the current configuration in
place: a gateway runs on its last good copy until that copy expires (DESIGN.md step 3,
PROTOCOL.md `Server.ClientProxy.OutdatedGlobalConf`). The periodic download loop and the
central registry's server are built on top of this and add no rules of their own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final

from gateway.crypto.keys import write_file_atomically
from gateway.globalconf.model import GlobalConf, GlobalConfError
from gateway.globalconf.signed import (
    MAX_SIGNED_GLOBALCONF_BYTES,
    Anchor,
    anchor_from_json,
    anchor_to_json,
    verify_signed_globalconf,
)
from gateway.outbound import OutboundError, OutboundRequest, ResponseTooLarge, Transport
from gateway.outbound.network import service_transport

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_SECONDS: Final = 30.0
"""Whole download; well inside the 60 s refresh interval, so one stuck fetch never piles up."""

CACHE_FILE_MODE: Final = 0o644
"""The global configuration is public within the federation; other local tools may read it."""

ANCHOR_FILE_MODE: Final = 0o644

_HTTP_SCHEMES: Final = ("http://", "https://")


class GlobalConfUnavailable(GlobalConfError):
    """The configuration could not be fetched or read (network, HTTP status, size limit, file)."""


class GlobalConfRollback(GlobalConfError):
    """The fetched configuration is older than the current one, or the same version changed."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_anchor(path: Path) -> Anchor:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GlobalConfUnavailable(f"cannot read anchor {path}: {exc}") from exc
    return anchor_from_json(data)


def save_anchor(path: Path, anchor: Anchor) -> None:
    write_file_atomically(Path(path), anchor_to_json(anchor), ANCHOR_FILE_MODE)


class GlobalConfSource:
    """One gateway's view of the global configuration: the current verified copy and how to renew it."""

    def __init__(
        self,
        location: str,
        anchor: Anchor,
        cache_path: Path,
        *,
        timeout_seconds: float = DOWNLOAD_TIMEOUT_SECONDS,
        max_bytes: int = MAX_SIGNED_GLOBALCONF_BYTES,
        clock: Callable[[], dt.datetime] = utc_now,
        transport: Transport | None = None,
    ) -> None:
        """`transport` asks an http(s) location; without one each download opens its own."""
        if "://" in location and not location.startswith(_HTTP_SCHEMES):
            raise ValueError(f"configuration location must be a file path or an http(s) URL: {location!r}")
        self.location = location
        self.anchor = anchor
        self.cache_path = Path(cache_path)
        self.timeout_seconds = timeout_seconds
        self.max_bytes = max_bytes
        self._clock = clock
        self._transport = transport
        self._current: GlobalConf | None = None
        self._current_data: bytes | None = None
        self._lock = asyncio.Lock()
        self.last_error: GlobalConfError | None = None
        """Why the last refresh failed, or None after a success: for health reporting."""

    @property
    def current(self) -> GlobalConf | None:
        return self._current

    def is_valid(self, now: dt.datetime) -> bool:
        """True when there is a verified configuration and it has not expired."""
        return self._current is not None and not self._current.is_expired(now)

    def load_cached(self) -> GlobalConf | None:
        """Adopt the cached copy, re-verified against today's anchor; None when there is none.

        Called at start-up so a gateway serves (and keeps rollback protection) before its
        first download. A cached copy the anchor no longer trusts raises, like a download would.
        """
        try:
            data = self.cache_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise GlobalConfUnavailable(f"cannot read cached configuration {self.cache_path}: {exc}") from exc
        conf = self._verify(data)
        if self._current is None or conf.version > self._current.version:
            self._current, self._current_data = conf, data
        return conf

    async def refresh(self) -> GlobalConf:
        """Fetch, verify and adopt the configuration at `location`; on any failure keep the current one."""
        async with self._lock:
            try:
                data = await self._fetch()
                conf = self._verify(data)
                self._check_not_older(conf)
                # Same content re-signed (a key rotation) is stored too, so the cache always
                # holds the newest signature.
                if data != self._current_data:
                    await asyncio.to_thread(write_file_atomically, self.cache_path, data, CACHE_FILE_MODE)
            except GlobalConfError as exc:
                self.last_error = exc
                log.warning("global configuration from %s refused: %s", self.location, exc)
                raise
            except OSError as exc:
                error = GlobalConfUnavailable(f"cannot write cache {self.cache_path}: {exc}")
                self.last_error = error
                raise error from exc
            if self._current is None or conf.version != self._current.version:
                log.info("global configuration %s version %d adopted", conf.instance, conf.version)
            self._current, self._current_data = conf, data
            self.last_error = None
            return conf

    def _verify(self, data: bytes) -> GlobalConf:
        return verify_signed_globalconf(
            data, self.anchor.certificates, self._clock(), instance=self.anchor.instance
        )

    def _check_not_older(self, conf: GlobalConf) -> None:
        """Rollback protection: an attacker replaying an old signed copy must not undo a change."""
        current = self._current
        if current is None:
            return
        if conf.version < current.version:
            raise GlobalConfRollback(f"version {conf.version} is older than the current {current.version}")
        if conf.version == current.version and conf != current:
            raise GlobalConfRollback(f"version {conf.version} was published before with other content")

    async def _fetch(self) -> bytes:
        if self.location.startswith(_HTTP_SCHEMES):
            return await self._download()
        return await asyncio.to_thread(self._read_file)

    def _read_file(self) -> bytes:
        try:
            with open(self.location, "rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except OSError as exc:
            raise GlobalConfUnavailable(f"cannot read {self.location}: {exc}") from exc
        if len(data) > self.max_bytes:
            raise GlobalConfUnavailable(f"{self.location} is larger than {self.max_bytes} bytes")
        return data

    async def _download(self) -> bytes:
        """GET the location; redirects are not followed (the anchor names the exact URLs)."""
        request = OutboundRequest(
            "GET", self.location, timeout_seconds=self.timeout_seconds, max_response_bytes=self.max_bytes
        )
        try:
            if self._transport is not None:
                response = await self._transport.send(request)
            else:
                transport = service_transport()
                try:
                    response = await transport.send(request)
                finally:
                    await transport.aclose()
        except ResponseTooLarge as exc:
            raise GlobalConfUnavailable(exc.describe(self.location)) from exc
        except OutboundError as exc:
            raise GlobalConfUnavailable(
                f"cannot download {self.location}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status != 200:
            raise GlobalConfUnavailable(f"{self.location} answered HTTP {response.status}")
        return response.body
