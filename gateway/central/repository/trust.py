"""Trust services: certification authorities with their OCSP responders, and timestamping authorities."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.central import tables as t
from gateway.central.repository._rows import _certificate, _new_id
from gateway.central.repository.base import RegistryBase
from gateway.central.repository.errors import AlreadyExists
from gateway.globalconf.model import OcspResponder, TimestampingAuthority, TrustedCa


class TrustServiceChanges(RegistryBase):
    """Trusted CAs, their OCSP responders, and TSAs."""

    # --- trust services

    def add_trusted_ca(self, ca: TrustedCa) -> None:
        with self._change() as connection:
            if connection.scalar(sa.select(t.trusted_cas.c.id).where(t.trusted_cas.c.name == ca.name)):
                raise AlreadyExists(f"trusted CA {ca.name!r} exists already")
            canonical, _ = _certificate(ca.certificate, f"trusted CA {ca.name}")
            pk = _new_id(
                connection.execute(sa.insert(t.trusted_cas).values(name=ca.name, cert_pem=canonical))
            )
            self._insert_responders(connection, pk, ca.ocsp_responders)

    def set_ocsp_responders(self, name: str, responders: tuple[OcspResponder, ...]) -> None:
        with self._change() as connection:
            pk = self._pk_by(connection, t.trusted_cas.c.name, name, "trusted CA")
            connection.execute(sa.delete(t.ocsp_responders).where(t.ocsp_responders.c.ca_id == pk))
            self._insert_responders(connection, pk, responders)

    @staticmethod
    def _insert_responders(connection: Connection, ca_pk: int, responders: tuple[OcspResponder, ...]) -> None:
        if responders:
            connection.execute(
                sa.insert(t.ocsp_responders),
                [
                    {
                        "ca_id": ca_pk,
                        "url": r.url,
                        "cert_pem": _certificate(r.certificate, f"OCSP responder {r.url}")[0]
                        if r.certificate
                        else None,
                    }
                    for r in responders
                ],
            )

    def remove_trusted_ca(self, name: str) -> None:
        with self._change() as connection:
            pk = self._pk_by(connection, t.trusted_cas.c.name, name, "trusted CA")
            connection.execute(sa.delete(t.trusted_cas).where(t.trusted_cas.c.id == pk))

    def add_timestamping_authority(self, tsa: TimestampingAuthority) -> None:
        with self._change() as connection:
            if connection.scalar(
                sa.select(t.timestamping_authorities.c.id).where(
                    t.timestamping_authorities.c.name == tsa.name
                )
            ):
                raise AlreadyExists(f"timestamping authority {tsa.name!r} exists already")
            canonical, _ = _certificate(tsa.certificate, f"timestamping authority {tsa.name}")
            connection.execute(
                sa.insert(t.timestamping_authorities).values(name=tsa.name, url=tsa.url, cert_pem=canonical)
            )

    def update_timestamping_authority(self, tsa: TimestampingAuthority) -> None:
        """Replace the URL and certificate of the TSA named `tsa.name`."""
        with self._change() as connection:
            pk = self._pk_by(
                connection, t.timestamping_authorities.c.name, tsa.name, "timestamping authority"
            )
            canonical, _ = _certificate(tsa.certificate, f"timestamping authority {tsa.name}")
            connection.execute(
                sa.update(t.timestamping_authorities)
                .where(t.timestamping_authorities.c.id == pk)
                .values(url=tsa.url, cert_pem=canonical)
            )

    def remove_timestamping_authority(self, name: str) -> None:
        with self._change() as connection:
            pk = self._pk_by(connection, t.timestamping_authorities.c.name, name, "timestamping authority")
            connection.execute(
                sa.delete(t.timestamping_authorities).where(t.timestamping_authorities.c.id == pk)
            )
