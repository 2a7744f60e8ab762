"""The registry as the witness of gateways' message logs: it keeps the signed log heads they send.

A gateway's signed heads (gateway.messagelog.heads) show when its newest records were cut,
but only while a copy survives that the gateway's operator cannot rewrite. The registry keeps
one: it accepts a head only from a gateway it lists, signed by that gateway's owner member (a
signing certificate of a trusted CA naming the member, as registration requests are), and
never lets a node's head go back.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa
from cryptography import x509

from gateway.central import tables as t
from gateway.central.repository.base import RegistryBase
from gateway.central.repository.errors import Conflict, NotFound
from gateway.crypto.certs import CertificateError, member_of
from gateway.db import begin_write
from gateway.ids import SecurityServerId
from gateway.messagelog.heads import HeadError, SignedHead, parse_head, verify_head

MAX_HEADS_ANSWERED: Final = 1000
"""Newest heads answered per gateway: one per node; far more nodes than any gateway runs."""


class UntrustedHead(Exception):
    """A head that is not signed by the owner of a listed gateway."""


def _is_owner(gateway: str, certificate: x509.Certificate) -> bool:
    try:
        return member_of(certificate) == SecurityServerId.from_text(gateway).owner
    except (CertificateError, ValueError):
        return False


class LogHeadWitness(RegistryBase):
    """Accepting and answering gateways' signed log heads."""

    def accept_log_head(self, line: bytes) -> SignedHead:
        """Verify and keep one head; UntrustedHead, Conflict (a head going back) or NotFound."""
        try:
            signed = parse_head(line)
            server = SecurityServerId.from_text(signed.head.gateway)
            verify_head(signed, self.trusted_ca_certificates(), is_owner_cert=_is_owner)
        except (HeadError, ValueError) as exc:
            raise UntrustedHead(str(exc)) from exc
        with begin_write(self.engine) as connection:  # not a configuration change: nothing to publish
            if self._find_server(connection, server) is None:
                raise NotFound(f"no security server {server} is registered")
            newest = connection.scalar(
                sa.select(sa.func.max(t.log_heads.c.seq)).where(
                    t.log_heads.c.gateway == signed.head.gateway, t.log_heads.c.node == signed.head.node
                )
            )
            if newest is not None and signed.head.seq < newest:
                raise Conflict(f"the witness holds a head at {newest}: a log head never goes back")
            connection.execute(
                sa.insert(t.log_heads).values(
                    gateway=signed.head.gateway,
                    node=signed.head.node,
                    seq=signed.head.seq,
                    signed_at=signed.head.time,
                    received_at=self.now(),
                    document=signed.to_line(),
                )
            )
        return signed

    def newest_log_heads(self, gateway: str, node: str | None = None) -> list[str]:
        """The newest head line of each node of `gateway` (of `node` only, when given)."""
        h = t.log_heads
        newest = (
            sa.select(h.c.node, sa.func.max(h.c.id).label("id"))
            .where(h.c.gateway == gateway, *(() if node is None else (h.c.node == node,)))
            .group_by(h.c.node)
            .subquery()
        )
        query = sa.select(h.c.document).join(newest, h.c.id == newest.c.id).order_by(h.c.node)
        with self.engine.connect() as connection:
            return list(connection.scalars(query.limit(MAX_HEADS_ANSWERED)))
