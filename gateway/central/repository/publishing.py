"""What is published and how: the settings, the configuration-signing keys, the signed versions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from cryptography import x509
from sqlalchemy.engine import Connection, Row

from gateway.central import tables as t
from gateway.central.repository._rows import (
    _SINGLE_ROW,
    _new_id,
    _read_monitoring_client,
    _read_settings,
    _settings_values,
    _signing_key_record,
)
from gateway.central.repository.base import RegistryBase
from gateway.central.repository.errors import AlreadyExists, Conflict, InvalidChange, NotFound, RegistryError
from gateway.central.repository.values import PublishedConf, Signer, SigningKeyRecord
from gateway.central.tables import SigningKeyStatus
from gateway.crypto.certs import certificate_to_pem, fingerprint_sha256
from gateway.db import begin_write
from gateway.globalconf.model import GlobalConfError, GlobalConfSettings
from gateway.ids import ClientId


class Publishing(RegistryBase):
    """Settings, configuration-signing keys, and publishing signed versions."""

    # --- settings

    def initialise_settings(self, settings: GlobalConfSettings) -> GlobalConfSettings:
        """Store `settings` unless the registry has settings already; the stored ones either way."""
        with begin_write(self._engine) as connection:
            if connection.scalar(sa.select(t.settings.c.id)) is None:
                connection.execute(sa.insert(t.settings).values(id=_SINGLE_ROW, **_settings_values(settings)))
            return _read_settings(connection)

    def update_settings(self, **changes: int) -> GlobalConfSettings:
        """Change some settings (GlobalConfSettings field names); the result as stored."""
        with self._change() as connection:
            try:
                updated = GlobalConfSettings(**{**_settings_values(_read_settings(connection)), **changes})
            except (GlobalConfError, TypeError) as exc:
                raise InvalidChange(str(exc)) from exc
            values = _settings_values(updated)
            if connection.execute(sa.update(t.settings).values(**values)).rowcount == 0:
                connection.execute(sa.insert(t.settings).values(id=_SINGLE_ROW, **values))
            return updated

    def monitoring_client(self) -> ClientId | None:
        with self._engine.connect() as connection:
            return _read_monitoring_client(connection)

    def set_monitoring_client(self, client: ClientId | None) -> ClientId | None:
        """Name (or with None, unname) the federation's monitoring client; it must be registered."""
        with self._change() as connection:
            value = None if client is None else client.to_text()
            if connection.execute(sa.update(t.settings).values(monitoring_client=value)).rowcount == 0:
                defaults = _settings_values(_read_settings(connection))
                connection.execute(
                    sa.insert(t.settings).values(id=_SINGLE_ROW, monitoring_client=value, **defaults)
                )
            return client

    # --- configuration-signing keys

    def add_signing_key(
        self,
        key_path: str,
        certificate: x509.Certificate,
        *,
        passphrase_env: str | None = None,
        activate: bool = False,
    ) -> SigningKeyRecord:
        """Register a key (its private key stays in `key_path`); it enters the anchor at once."""
        sha256 = fingerprint_sha256(certificate)
        with begin_write(self._engine) as connection:
            if connection.scalar(sa.select(t.signing_keys.c.id).where(t.signing_keys.c.sha256 == sha256)):
                raise AlreadyExists(f"signing key with certificate {sha256} is registered already")
            pk = _new_id(
                connection.execute(
                    sa.insert(t.signing_keys).values(
                        key_path=key_path,
                        passphrase_env=passphrase_env,
                        cert_pem=certificate_to_pem(certificate).decode("ascii"),
                        sha256=sha256,
                        status=SigningKeyStatus.STANDBY.value,
                        created_at=self._clock(),
                    )
                )
            )
            if activate:
                self._activate(connection, pk)
        return self.signing_key(pk)

    def activate_signing_key(self, key_id: int) -> SigningKeyRecord:
        """Make a key the one that signs; the active one until now stays in the anchor as standby."""
        with begin_write(self._engine) as connection:
            row = self._signing_key_row(connection, key_id)
            if row.status == SigningKeyStatus.RETIRED:
                raise Conflict(f"signing key {key_id} is retired: gateways no longer trust it")
            self._activate(connection, key_id)
        return self.signing_key(key_id)

    def _activate(self, connection: Connection, key_id: int) -> None:
        keys = t.signing_keys
        connection.execute(
            sa.update(keys)
            .where(keys.c.status == SigningKeyStatus.ACTIVE.value, keys.c.id != key_id)
            .values(status=SigningKeyStatus.STANDBY.value)
        )
        connection.execute(
            sa.update(keys)
            .where(keys.c.id == key_id, keys.c.status != SigningKeyStatus.ACTIVE.value)
            .values(status=SigningKeyStatus.ACTIVE.value, activated_at=self._clock())
        )

    def retire_signing_key(self, key_id: int) -> SigningKeyRecord:
        """Take a key out of the anchor; the active key cannot go (activate another first)."""
        with begin_write(self._engine) as connection:
            row = self._signing_key_row(connection, key_id)
            if row.status == SigningKeyStatus.ACTIVE:
                raise Conflict(f"signing key {key_id} is the active one: activate another key first")
            if row.status == SigningKeyStatus.RETIRED:
                raise Conflict(f"signing key {key_id} is retired already")
            connection.execute(
                sa.update(t.signing_keys)
                .where(t.signing_keys.c.id == key_id)
                .values(status=SigningKeyStatus.RETIRED.value, retired_at=self._clock())
            )
        return self.signing_key(key_id)

    @staticmethod
    def _signing_key_row(connection: Connection, key_id: int) -> Row[Any]:
        row = connection.execute(
            sa.select(t.signing_keys).where(t.signing_keys.c.id == key_id).with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"no signing key {key_id}")
        return row

    def signing_key(self, key_id: int) -> SigningKeyRecord:
        with self._engine.connect() as connection:
            return _signing_key_record(self._signing_key_row(connection, key_id))

    def signing_keys(self) -> list[SigningKeyRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(t.signing_keys).order_by(t.signing_keys.c.id))
            return [_signing_key_record(row) for row in rows]

    def anchor_certificates(self) -> list[x509.Certificate]:
        """The verification certificates gateways must hold: the active key's first, then the standby ones."""
        live = [key for key in self.signing_keys() if key.status is not SigningKeyStatus.RETIRED]
        live.sort(key=lambda key: (key.status is not SigningKeyStatus.ACTIVE, key.id))
        return [key.certificate for key in live]

    # --- publishing

    def publish(self, sign: Signer) -> PublishedConf:
        """Build the next version, sign it with the active key, store it: one transaction."""
        now = self._clock()
        with begin_write(self._engine) as connection:
            state = connection.execute(sa.select(t.published).with_for_update()).one()
            key_row = connection.execute(
                sa.select(t.signing_keys).where(t.signing_keys.c.status == SigningKeyStatus.ACTIVE.value)
            ).first()
            if key_row is None:
                raise RegistryError("no active configuration-signing key: add or activate one")
            key = _signing_key_record(key_row)
            conf = self._load_conf(connection, int(state.version) + 1, now)
            signed = sign(conf, key)
            connection.execute(
                sa.update(t.published).values(
                    version=conf.version,
                    generated_at=conf.generated_at,
                    expires_at=conf.expires_at,
                    signed=signed.decode("ascii"),
                    signer_sha256=key.sha256,
                )
            )
        return PublishedConf(conf.version, conf.generated_at, conf.expires_at, signed, key.sha256)

    def published(self) -> PublishedConf | None:
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(t.published)).one()
        if row.signed is None:
            return None
        return PublishedConf(
            row.version, row.generated_at, row.expires_at, row.signed.encode("ascii"), row.signer_sha256
        )
