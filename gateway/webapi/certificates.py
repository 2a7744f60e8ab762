"""How both management APIs show a certificate: its fingerprint, subject and expiry, not its PEM."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gateway.crypto.certs import fingerprint_sha256, load_certificate
from gateway.globalconf.signed import format_time
from gateway.webapi.types import Answer


class CertificateSummary(Answer):
    sha256: str = Field(description="Lower-case hex SHA-256 of the DER certificate.")
    subject: str = Field(description="RFC 4514 subject.")
    not_after: str = Field(json_schema_extra={"format": "date-time"})


def certificate_summary(pem: str) -> dict[str, Any]:
    """The CertificateSummary of a PEM certificate (a bad one raises CertificateError)."""
    certificate = load_certificate(pem.encode())
    return {
        "sha256": fingerprint_sha256(certificate),
        "subject": certificate.subject.rfc4514_string(),
        "not_after": format_time(certificate.not_valid_after_utc),
    }
