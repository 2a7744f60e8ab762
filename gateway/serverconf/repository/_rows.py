"""Table rows to values and back, for the server configuration's tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy.engine import Row

from gateway.ids import ClientId, ObjectType, ServiceId
from gateway.serverconf.access import AccessSubject, Endpoint, subject_from_text
from gateway.serverconf.model import (
    BackendTls,
    KeyRecord,
    KeyUsage,
    PinnedCertificate,
    ServiceConf,
    ServiceDescription,
    ServiceKind,
)
from gateway.serverconf.repository.errors import ServerConfError
from gateway.serverconf.tables import SubjectType

CONFIG_ROW: Final = 1
"""The one row of `config_version`."""


def client_from_row(row: Row[Any]) -> ClientId:
    return ClientId(row.instance, row.member_class, row.member_code, row.subsystem_code)


def subject_to_row(subject: AccessSubject) -> tuple[str, str]:
    return SubjectType(subject.object_type.value).value, subject.to_text()


def subject_from_row(subject_type: str, text: str) -> AccessSubject:
    return subject_from_text(ObjectType(SubjectType(subject_type).value), text)


def endpoint_from_row(method: str | None, path: str | None) -> Endpoint | None:
    return None if method is None or path is None else Endpoint(method, path)


def service_values(conf: ServiceConf) -> dict[str, Any]:
    description = conf.description
    return {
        "service_code": conf.service.service_code,
        "service_version": conf.service.service_version,
        "kind": conf.kind.value,
        "description_document": description.document if description else None,
        "description_source": description.source if description else None,
        "backend_url": conf.backend_url,
        "timeout_seconds": conf.timeout_seconds,
        "tls_verify": conf.tls.verify,
        "tls_ca_bundle_pem": conf.tls.ca_bundle_pem,
        "tls_client_cert_path": conf.tls.client_cert_path,
        "tls_client_key_path": conf.tls.client_key_path,
        "enabled": conf.enabled,
        "disabled_notice": conf.disabled_notice,
    }


def service_from_row(row: Row[Any], provider: ClientId, endpoints: Sequence[Endpoint]) -> ServiceConf:
    description = None
    if row.description_document is not None:
        description = ServiceDescription(row.description_document, row.description_source or "")
    service = ServiceId(
        provider.instance,
        provider.member_class,
        provider.member_code,
        provider.subsystem_code,
        row.service_code,
        row.service_version,
    )
    return ServiceConf(
        service=service,
        kind=ServiceKind(row.kind),
        backend_url=row.backend_url,
        timeout_seconds=row.timeout_seconds,
        tls=BackendTls(
            row.tls_verify, row.tls_ca_bundle_pem, row.tls_client_cert_path, row.tls_client_key_path
        ),
        enabled=row.enabled,
        disabled_notice=row.disabled_notice,
        description=description,
        endpoints=tuple(endpoints),
    )


def key_from_row(row: Row[Any]) -> KeyRecord:
    member = ClientId.from_text(row.member_id) if row.member_id is not None else None
    return KeyRecord(
        row.id,
        KeyUsage(row.usage),
        member,
        row.key_path,
        row.cert_pem,
        row.csr_pem,
        row.status,
        row.created_at,
    )


def pinned_certificate(cert_pem: str | bytes) -> PinnedCertificate:
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError as error:
        raise ServerConfError(f"not a PEM certificate: {error}") from error
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return PinnedCertificate(certificate.fingerprint(hashes.SHA256()).hex(), pem)
