"""Certificates the unit tests make for themselves: what every one of them has, in one place.

The development PKI (`gateway.trust.pki`) makes the federation's certificates; these are the
odd ones a test needs (short-lived, mis-used, of an unknown CA), built field by field.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID


def common_name(text: str) -> x509.Name:
    """A subject or issuer that is only a CN."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def certificate_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    """A certificate of `public_key` with a random serial number, valid from `not_before` to
    `not_after`: the test adds its extensions and signs it."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
