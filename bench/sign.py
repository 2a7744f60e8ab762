"""What signing costs per message: one XML signature each, against the batch signer.

Run: `.venv/bin/python bench/sign.py [messages]`. For EC P-256 and RSA-2048 keys it prints
messages per second (a) signed with one `sign_root` each and verified without a cache, and
(b) signed through `BatchSigner` by 256 concurrent senders and verified per message
(`verify_message_signature`, one real verification per batch). It also prints what the
transport format costs for a 1 KB SOAP message (encode + decode). DESIGN.md "One signer" is
the claim under test: with batching the per-message cost is hashing, whatever the key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.crypto import rootsig
from gateway.crypto.batchsigner import BatchSigner, MessageSignature, verify_message_signature
from gateway.crypto.hashtree import build_tree
from gateway.crypto.keys import PrivateKey
from gateway.protocol.transport import (
    SoapPayload,
    TransportMessage,
    decode_transport,
    encode_transport,
    manifest_digest,
    signed_parts,
)

CONCURRENT_SENDERS = 256
NOW = dt.datetime.now(dt.UTC)


def certify(key: PrivateKey, issuer_key: PrivateKey, *, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA" if ca else "bench signer")])
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=not ca,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def rate(count: int, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def one_signature_each(
    key: PrivateKey, cert: x509.Certificate, ca: x509.Certificate, n: int
) -> tuple[float, float]:
    leaves = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]
    signatures: list[MessageSignature] = []

    def sign() -> None:
        for leaf in leaves:
            root, (proof,) = build_tree([leaf])
            signatures.append(MessageSignature(rootsig.sign_root(root, key, cert, NOW), proof, leaf))

    def verify() -> None:
        for leaf, signature in zip(leaves, signatures, strict=True):
            verify_message_signature(leaf, signature, [ca])

    return rate(n, sign), rate(n, verify)


def batched(
    key: PrivateKey, cert: x509.Certificate, ca: x509.Certificate, n: int
) -> tuple[float, float, int]:
    leaves = [hashlib.sha256(b"batched" + i.to_bytes(8, "big")).digest() for i in range(n)]
    signer = BatchSigner(key, cert)
    signatures: list[MessageSignature] = []

    async def sender(mine: list[bytes]) -> None:
        for leaf in mine:
            signatures.append(await signer.sign(leaf))

    async def sign_all() -> None:
        await asyncio.gather(*(sender(leaves[i::CONCURRENT_SENDERS]) for i in range(CONCURRENT_SENDERS)))

    signing = rate(n, lambda: asyncio.run(sign_all()))
    verifying = rate(n, lambda: [verify_message_signature(s.leaf, s, [ca]) for s in signatures])
    return signing, verifying, signer.signatures_made


def transport_micros(key: PrivateKey, cert: x509.Certificate, n: int) -> tuple[float, float]:
    payload = SoapPayload("text/xml; charset=utf-8", b"<Envelope>" + b"x" * 1003 + b"</Envelope>")
    leaf = manifest_digest(signed_parts(payload))
    root, (proof,) = build_tree([leaf])
    message = TransportMessage(
        payload, MessageSignature(rootsig.sign_root(root, key, cert, NOW), proof, leaf)
    )
    content_type, body = encode_transport(message)
    encode = 1e6 / rate(n, lambda: [encode_transport(message) for _ in range(n)])
    decode = 1e6 / rate(
        n, lambda: [decode_transport(content_type, body, max_bytes=1 << 20) for _ in range(n)]
    )
    return encode, decode


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certify(ca_key, ca_key, ca=True)
    keys: dict[str, PrivateKey] = {
        "EC P-256": ec.generate_private_key(ec.SECP256R1()),
        "RSA-2048": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }
    print(f"{n} messages ({n * 10} batched, {CONCURRENT_SENDERS} concurrent senders); messages per second")
    columns = ("key", "sign each", "verify each", "sign batched", "verify batched", "batches")
    print("{:<10}{:>13}{:>13}{:>14}{:>16}{:>9}".format(*columns))
    for name, key in keys.items():
        cert = certify(key, ca_key, ca=False)
        sign_each, verify_each = one_signature_each(key, cert, ca, n)
        sign_batch, verify_batch, batches = batched(key, cert, ca, n * 10)
        row = (
            name,
            f"{sign_each:,.0f}",
            f"{verify_each:,.0f}",
            f"{sign_batch:,.0f}",
            f"{verify_batch:,.0f}",
            batches,
        )
        print("{:<10}{:>13}{:>13}{:>14}{:>16}{:>9}".format(*row))
    encode, decode = transport_micros(keys["EC P-256"], certify(keys["EC P-256"], ca_key, ca=False), n * 5)
    print(f"transport, 1 KB SOAP: encode {encode:.1f} µs, decode {decode:.1f} µs per message")


if __name__ == "__main__":
    main()
