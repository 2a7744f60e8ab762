"""Keeps the signed global configuration current: after every change, and at least every interval.

The repository builds and stores each version in one transaction; the publisher brings
what the database cannot: the private keys (read from their files, passphrases from
environment variables) and the clock that re-signs an unchanged configuration before it
expires. Every publication is a new version, because gateways refuse the same version with
different content (`GlobalConfSource`, rollback protection) and a re-signed configuration
has a new expiry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509

from gateway.central.repository import CentralRepository, PublishedConf, RegistryError, SigningKeyRecord
from gateway.crypto.keys import KeyFileError, PrivateKey, load_private_key
from gateway.globalconf import GlobalConf, sign_globalconf
from gateway.globalconf.signed import Anchor

log = logging.getLogger(__name__)

MIN_INTERVAL_FRACTION_OF_VALIDITY = 0.5
"""Re-sign by half the validity at the latest, so one failed round never lets gateways' copies lapse."""

RETRY_SECONDS = 5.0
"""After a failed publication (no active key, unreadable key file), try again this soon."""


class SigningKeyUnusable(RegistryError):
    """A configuration-signing key file cannot be read, or is not the certificate's key."""


def load_signing_key(
    key_path: str, passphrase_env: str | None, certificate: x509.Certificate, environ: Mapping[str, str]
) -> PrivateKey:
    """The private key in `key_path`, checked to belong to `certificate`."""
    passphrase = None
    if passphrase_env:
        value = environ.get(passphrase_env)
        if value is None:
            raise SigningKeyUnusable(
                f"{key_path} is encrypted with the passphrase in {passphrase_env}, which is unset"
            )
        passphrase = value.encode()
    try:
        key = load_private_key(Path(key_path), passphrase)
    except (OSError, KeyFileError) as exc:
        raise SigningKeyUnusable(f"cannot read signing key {key_path}: {exc}") from exc
    if key.public_key() != certificate.public_key():
        raise SigningKeyUnusable(f"{key_path} is not the key of the certificate it was registered with")
    return key


class ConfigurationPublisher:
    """Publishes the registry's configuration and holds the last published copy for serving."""

    def __init__(
        self,
        repository: CentralRepository,
        *,
        regenerate_seconds: float,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.repository = repository
        self.regenerate_seconds = regenerate_seconds
        self._environ = environ if environ is not None else os.environ
        self._keys: dict[str, PrivateKey] = {}  # by certificate SHA-256
        self._lock = threading.Lock()
        self._current = repository.published()
        self.last_error: str | None = None

    @property
    def current(self) -> PublishedConf | None:
        return self._current

    def publish(self) -> PublishedConf:
        """Sign and store the next version now (thread-safe: one publication at a time)."""
        with self._lock:
            try:
                published = self.repository.publish(self._sign)
            except RegistryError as exc:
                self.last_error = str(exc)
                raise
            self._current = published
            self.last_error = None
        log.info("global configuration version %d published", published.version)
        return published

    async def publish_soon(self) -> PublishedConf | None:
        """Publish from the event loop; a failure is logged and kept in `last_error`, never raised.

        Whatever fails (no active key, a key file gone, the database away), the last published
        copy keeps being served and the timer tries again.
        """
        try:
            return await asyncio.to_thread(self.publish)
        except RegistryError as exc:
            log.error("global configuration not published: %s", exc)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("global configuration not published")
        return None

    def _sign(self, conf: GlobalConf, key: SigningKeyRecord) -> bytes:
        private_key = self._keys.get(key.sha256)
        if private_key is None:
            private_key = load_signing_key(key.key_path, key.passphrase_env, key.certificate, self._environ)
            self._keys[key.sha256] = private_key
        return sign_globalconf(conf, private_key, key.certificate)

    def interval_seconds(self) -> float:
        """How long a published copy may stay before it is re-signed."""
        current = self._current
        if current is None:
            return self.regenerate_seconds
        validity = (current.expires_at - current.generated_at).total_seconds()
        return min(self.regenerate_seconds, validity * MIN_INTERVAL_FRACTION_OF_VALIDITY)

    def seconds_until_due(self) -> float:
        current = self._current
        if current is None:
            return 0.0
        age = (self.repository.now() - current.generated_at).total_seconds()
        return self.interval_seconds() - age

    async def run(self) -> None:
        """Re-publish whenever the current copy is due; runs until cancelled."""
        while True:
            delay = self.seconds_until_due()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if await self.publish_soon() is None:
                await asyncio.sleep(min(RETRY_SECONDS, self.interval_seconds()))

    def anchor(self, configuration_urls: tuple[str, ...]) -> Anchor:
        """The anchor gateways need now: every certificate that may sign (active and standby keys)."""
        return Anchor(
            self.repository.instance, configuration_urls, tuple(self.repository.anchor_certificates())
        )
