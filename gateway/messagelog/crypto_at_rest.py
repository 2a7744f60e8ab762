"""Message bodies encrypted at rest in the log (DESIGN.md "Security rules": bodies may hold
personal data), sans-IO.

AES-256-GCM with keys from the node's configuration, each under a short key id. A stored body
is (key id, 96-bit random nonce, ciphertext with its 128-bit tag). The record's chain hash
covers the digest of the *plaintext* (`LogRecord.message_sha256`), so verifying the chain needs
no key, and reading a body with the key re-checks it against that digest: a body swapped
between records, or decrypted under the wrong key, is caught even though GCM alone would not
know which record it belongs to.

Key rotation: add a new key id to the node's configuration and make it `current`. New bodies
are encrypted under it; bodies already stored keep naming the id they were written under, so
every old id must stay in `keys` for as long as records encrypted with it are kept (until they
are archived and purged). Nothing is re-encrypted, and the chain does not change, because it
covers plaintext digests. Rotate well before a key has encrypted 2**32 bodies: with random
96-bit nonces that is NIST SP 800-38D §8.3's limit per key (about 270 days at 500 bodies/s).

Compression comes first (issue 16, lean log records): ciphertext does not compress, so a body
is compressed (gateway.messagelog.packing) and the result encrypted; `EncryptedBody.codec` says
how, and decrypting undoes both before the digest check.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.messagelog.packing import compress_body, decompress_body

KEY_BYTES: Final = 32
"""AES-256: the issue asks for 256-bit keys."""

NONCE_BYTES: Final = 12
"""GCM's 96-bit nonce (NIST SP 800-38D §8.2.2: random nonces of exactly 96 bits)."""

MAX_KEY_ID_LENGTH: Final = 64
"""Matches the `body_key_id` column; key ids are names like `2026-11`, not key material."""

ASSOCIATED_DATA: Final = b"xgate-messagelog-body/1"
"""Binds each ciphertext to this one use, should a key ever be shared with another purpose."""

_KEY_ID = re.compile(r"[A-Za-z0-9._:-]+")


class BodyDecryptionError(Exception):
    """A stored body cannot be read back: unknown key id, wrong key, or altered ciphertext."""


class BodyIntegrityError(BodyDecryptionError):
    """A body decrypted, but its digest is not the one the record's chain covers."""


@dataclass(frozen=True)
class EncryptedBody:
    """A body as stored: which key, which nonce, the ciphertext with its GCM tag, and how the
    plaintext was compressed before encryption (None: not compressed)."""

    key_id: str
    nonce: bytes
    ciphertext: bytes
    codec: str | None = None


class BodyCipher:
    """Encrypts bodies under the current key and decrypts under any key it still holds."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"the current key id {current!r} is not among the keys")
        for key_id, key in keys.items():
            if len(key_id) > MAX_KEY_ID_LENGTH or not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"key id {key_id!r} must be 1-{MAX_KEY_ID_LENGTH} of [A-Za-z0-9._:-]")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id!r} must be {KEY_BYTES} bytes (AES-256)")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    def encrypt(self, plaintext: bytes, *, compress: bool = False) -> EncryptedBody:
        """`plaintext` under the current key; with `compress`, compressed first when that is smaller."""
        codec, data = compress_body(plaintext) if compress else (None, plaintext)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._ciphers[self.current].encrypt(nonce, data, ASSOCIATED_DATA)
        return EncryptedBody(self.current, nonce, ciphertext, codec)

    def decrypt(self, body: EncryptedBody, expected_sha256_hex: str | None) -> bytes:
        """The plaintext, checked against the digest the chain covers (when the record has one)."""
        cipher = self._ciphers.get(body.key_id)
        if cipher is None:
            raise BodyDecryptionError(f"no key with id {body.key_id!r}: keep old ids after rotating")
        try:
            plaintext = cipher.decrypt(body.nonce, body.ciphertext, ASSOCIATED_DATA)
        except InvalidTag as exc:
            raise BodyDecryptionError(f"body does not decrypt under key {body.key_id!r}") from exc
        try:
            plaintext = decompress_body(body.codec, plaintext)
        except ValueError as exc:
            raise BodyDecryptionError(f"decrypted body does not decompress: {exc}") from exc
        if expected_sha256_hex is not None and not hmac.compare_digest(
            hashlib.sha256(plaintext).hexdigest(), expected_sha256_hex
        ):
            raise BodyIntegrityError("decrypted body does not match the record's message digest")
        return plaintext
