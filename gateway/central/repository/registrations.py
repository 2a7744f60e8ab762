"""Registration requests from gateways: stored when they could be approved, then approved
(applied) or rejected."""

from __future__ import annotations

import secrets
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from gateway.central import tables as t
from gateway.central.repository._rows import _needs, _request_record
from gateway.central.repository.errors import Conflict, NotFound
from gateway.central.repository.members import MemberChanges
from gateway.central.repository.servers import ServerChanges
from gateway.central.repository.values import RequestRecord
from gateway.central.requests import (
    RegistrationRequest,
    RequestType,
    SignatureRole,
    VerifiedRequest,
    missing_consent,
    read_signed_request,
    signature_roles,
)
from gateway.central.tables import RequestState
from gateway.db import begin_write

REQUEST_ID_BYTES: Final = 16
"""128 random bits: a request's id is its public handle, so it must not be guessable."""

DEFAULT_REQUEST_PAGE: Final = 100
MAX_REQUEST_PAGE: Final = 1000


class RegistrationRequests(MemberChanges, ServerChanges):
    """Registration requests: submitted, decided, applied in the deciding transaction."""

    # --- registration requests

    def submit_request(self, verified: VerifiedRequest, signed: bytes) -> RequestRecord:
        """Store a verified request as pending, if it could be approved as things stand now.

        The check is a dry run: the change is applied inside a savepoint, checked for
        consistency and rolled back. A request whose nonce was seen before is a replay. A
        hosting request without its subsystem's member's consent is refused here too, whoever
        verified it (`gateway.central.requests.missing_consent`).
        """
        request = verified.request
        verified_roles = {SignatureRole.MEMBER}
        if verified.client_certificate is not None:
            verified_roles.add(SignatureRole.CLIENT)
        _require_consent(request, frozenset(verified_roles))
        request_id = secrets.token_hex(REQUEST_ID_BYTES)
        now = self._clock()
        try:
            with begin_write(self._engine) as connection:
                self._member_pk(connection, request.member)
                if connection.scalar(
                    sa.select(t.registration_requests.c.id).where(
                        t.registration_requests.c.nonce == request.nonce
                    )
                ):
                    raise Conflict("this request was received before (same nonce)")
                savepoint = connection.begin_nested()
                try:
                    self._apply(connection, request)
                    self._check_publishable(connection)
                finally:
                    savepoint.rollback()
                connection.execute(
                    sa.insert(t.registration_requests).values(
                        id=request_id,
                        type=request.type.value,
                        state=RequestState.PENDING.value,
                        server_id=request.server.to_text() if request.server else None,
                        member_id=request.member.to_text(),
                        client_id=request.client.to_text() if request.client else None,
                        nonce=request.nonce,
                        signed_request=signed.decode("utf-8"),
                        submitted_at=now,
                    )
                )
        except sa.exc.IntegrityError as error:
            raise Conflict(f"the request conflicts with the registry: {error.orig}") from error
        return RequestRecord(request_id, request, RequestState.PENDING, now, None, None, None)

    def _apply(self, connection: Connection, request: RegistrationRequest) -> None:
        """Make the change a request asks for (the caller's transaction decides whether it stays)."""
        kind = RequestType
        if request.type is kind.AUTH_CERT_REGISTRATION:
            server, address = _needs(request.server, "server"), _needs(request.address, "address")
            pk = self._find_server(connection, server)
            if pk is None:
                pk = self._insert_server(connection, server, address)
            else:
                self._update_address(connection, pk, address)
            self._insert_auth_certificate(
                connection, pk, _needs(request.auth_certificate, "auth_certificate")
            )
            if request.replaces is not None:
                self._delete_auth_certificate(connection, pk, request.replaces, server)
        elif request.type is kind.CLIENT_REGISTRATION:
            server, client = _needs(request.server, "server"), _needs(request.client, "client")
            server_pk = self._server_pk(connection, server)
            self._member_pk(connection, client.member)  # the subsystem's member must be registered
            subsystem_pk = self._find_subsystem(connection, client) or self._insert_subsystem(
                connection, client
            )
            self._host(connection, server_pk, subsystem_pk, server, client)
        elif request.type is kind.ADDRESS_CHANGE:
            server_pk = self._server_pk(connection, _needs(request.server, "server"))
            self._update_address(connection, server_pk, _needs(request.address, "address"))
        elif request.type is kind.CLIENT_DELETION:
            self._unhost(connection, _needs(request.server, "server"), _needs(request.client, "client"))
        elif request.type is kind.SERVER_DELETION:
            self._delete_server(connection, _needs(request.server, "server"))
        elif request.type is kind.SUBSYSTEM_DELETION:
            self._delete_subsystem(connection, _needs(request.client, "client"))
        else:
            self._delete_member(connection, request.member)

    def approve_request(self, request_id: str, actor: str, reason: str | None = None) -> RequestRecord:
        """Apply a pending request and mark it approved, in one transaction."""
        with self._change() as connection:
            row = self._pending_request(connection, request_id)
            signed = row.signed_request.encode()
            request = read_signed_request(signed)
            # A hosting request stored before consent was required cannot be approved: the
            # gateway asks again, signed by the subsystem's member too.
            _require_consent(request, signature_roles(signed))
            self._apply(connection, request)
            self._decide(connection, request_id, RequestState.APPROVED, actor, reason)
        return self.request(request_id)

    def reject_request(self, request_id: str, actor: str, reason: str) -> RequestRecord:
        with begin_write(self._engine) as connection:
            self._pending_request(connection, request_id)
            self._decide(connection, request_id, RequestState.REJECTED, actor, reason)
        return self.request(request_id)

    @staticmethod
    def _pending_request(connection: Connection, request_id: str) -> Row[Any]:
        row = connection.execute(
            sa.select(t.registration_requests)
            .where(t.registration_requests.c.id == request_id)
            .with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"no request {request_id}")
        if row.state != RequestState.PENDING:
            raise Conflict(f"request {request_id} is {row.state} already")
        return row

    def _decide(
        self, connection: Connection, request_id: str, state: RequestState, actor: str, reason: str | None
    ) -> None:
        connection.execute(
            sa.update(t.registration_requests)
            .where(t.registration_requests.c.id == request_id)
            .values(state=state.value, decided_at=self._clock(), decided_by=actor, reason=reason)
        )

    def request(self, request_id: str) -> RequestRecord:
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(t.registration_requests).where(t.registration_requests.c.id == request_id)
            ).first()
        if row is None:
            raise NotFound(f"no request {request_id}")
        return _request_record(row)

    def requests(
        self, state: RequestState | None = None, limit: int = DEFAULT_REQUEST_PAGE
    ) -> list[RequestRecord]:
        """Requests newest first, all or in one state."""
        table = t.registration_requests
        query = (
            sa.select(table)
            .order_by(table.c.submitted_at.desc(), table.c.id)
            .limit(max(1, min(limit, MAX_REQUEST_PAGE)))
        )
        if state is not None:
            query = query.where(table.c.state == state.value)
        with self._engine.connect() as connection:
            return [_request_record(row) for row in connection.execute(query)]


def _require_consent(request: RegistrationRequest, roles: frozenset[SignatureRole]) -> None:
    reason = missing_consent(request, roles)
    if reason is not None:
        raise Conflict(reason)
