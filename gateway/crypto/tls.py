"""TLS contexts for the three kinds of connection a gateway makes or accepts.

DESIGN.md "Security rules": TLS 1.2 with AEAD suites and forward secrecy, or TLS 1.3.  Peers
are checked against the global configuration (the registered certificate), not merely against
a trusted CA.  The contexts here do the chain part; the handlers compare the peer's fingerprint
with what the global configuration or the server configuration registers.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


@dataclass(frozen=True)
class TlsIdentity:
    """The certificate chain and private key a context presents; the caller reads its passphrase."""

    cert: Path
    key: Path
    passphrase: str | None = None


TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305 (AEAD).

Mozilla's "intermediate" profile without its DHE suites; no CBC suites (Lucky13-style padding
oracles) and no RSA key exchange (no forward secrecy), where X-Road's defaults still offer CBC.
TLS 1.3 suites are all AEAD with forward secrecy; OpenSSL's defaults stand for them.
"""


def _base_context(purpose: ssl.Purpose) -> ssl.SSLContext:
    """Every context the gateway builds, server or client: TLS 1.2 (AEAD, ECDHE) or TLS 1.3."""
    context = ssl.create_default_context(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    # No TLS compression (CRIME); no TLS 1.2 renegotiation, which a client can use to make a
    # server repeat expensive handshakes on one connection.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def _load_identity(context: ssl.SSLContext, identity: TlsIdentity) -> None:
    context.load_cert_chain(str(identity.cert), str(identity.key), password=identity.passphrase)


def pem_bundle(certificates: Iterable[x509.Certificate]) -> str:
    return "".join(cert.public_bytes(Encoding.PEM).decode("ascii") for cert in certificates)


def external_server_context(identity: TlsIdentity, trusted_cas: Iterable[x509.Certificate]) -> ssl.SSLContext:
    """Accepts only peers presenting a certificate chained to a federation CA; pinning comes after."""
    context = _base_context(ssl.Purpose.CLIENT_AUTH)
    _load_identity(context, identity)
    context.verify_mode = ssl.CERT_REQUIRED
    bundle = pem_bundle(trusted_cas)
    if bundle:
        context.load_verify_locations(cadata=bundle)
    return context


def external_client_context(identity: TlsIdentity, trusted_cas: Iterable[x509.Certificate]) -> ssl.SSLContext:
    """Calls a provider gateway with our authentication certificate.

    Host names are not checked: gateways are identified by the certificate the global
    configuration registers for them, which the caller compares after the handshake.
    """
    context = _base_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    _load_identity(context, identity)
    bundle = pem_bundle(trusted_cas)
    if bundle:
        context.load_verify_locations(cadata=bundle)
    return context


def internal_server_context(identity: TlsIdentity, client_trust_pems: Iterable[str]) -> ssl.SSLContext:
    """HTTPS for agency systems: a client certificate is optional here and pinned per subsystem.

    Agency systems often present self-signed certificates; loading every pinned certificate
    as a trust anchor lets the handshake accept exactly those, and the handler then checks
    the fingerprint against the subsystem the request names.
    """
    context = _base_context(ssl.Purpose.CLIENT_AUTH)
    _load_identity(context, identity)
    context.verify_mode = ssl.CERT_OPTIONAL
    add_client_trust(context, client_trust_pems)
    return context


def add_client_trust(context: ssl.SSLContext, pems: Iterable[str]) -> None:
    """Adds newly pinned client certificates; affects handshakes from now on."""
    bundle = "".join(pems)
    if bundle.strip():
        context.load_verify_locations(cadata=bundle)


def backend_client_context(
    verify: bool, ca_pem: str | None, client_cert: Path | None, client_key: Path | None
) -> ssl.SSLContext:
    """TLS toward an agency's own service, as its registration says."""
    context = _base_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    if client_cert and client_key:
        context.load_cert_chain(str(client_cert), str(client_key))
    return context


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> x509.Certificate | None:
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None
