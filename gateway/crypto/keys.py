"""Private keys and certificate signing requests: generate, serialise, store.

A gateway's keys (TLS authentication, member signing) and the development CA's keys all pass
through here, so that every key on disk is written the same way: PEM, PKCS#8, mode 0600 from
the moment the file exists (DESIGN.md, security rules), optionally encrypted with a passphrase,
and replaced atomically so a crash never leaves half a key behind.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
"""The key types xgate creates and accepts: what X-Road-style federations and HSMs use."""

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

PRIVATE_KEY_FILE_MODE = 0o600
"""Readable by the owner only (DESIGN.md: keys 'encrypted on disk or at least mode 0600')."""

RSA_PUBLIC_EXPONENT = 65537
"""The only exponent anyone should use (NIST SP 800-56B; cryptography's own recommendation)."""

MIN_PASSPHRASE_BYTES = 8
"""An encrypted key with a shorter passphrase is protection in name only."""


class KeyAlgorithm(enum.StrEnum):
    """Key types the CLI offers: EC P-256 by default (fast, small); RSA for peers that need it."""

    EC = "ec"
    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"


_RSA_BITS = {KeyAlgorithm.RSA2048: 2048, KeyAlgorithm.RSA3072: 3072}


class KeyFileError(Exception):
    """A key file could not be read as a private key of a supported type."""


class PassphraseRequired(KeyFileError):
    """The key is encrypted and no passphrase was given: the caller may ask for one."""


class WrongPassphrase(KeyFileError):
    """The key is encrypted and the given passphrase does not open it."""


def generate_key(algorithm: KeyAlgorithm = KeyAlgorithm.EC) -> PrivateKey:
    """A fresh private key of the requested kind."""
    if algorithm is KeyAlgorithm.EC:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=_RSA_BITS[algorithm])


def signature_hash_for(key: PrivateKey) -> hashes.SHA256:
    """SHA-256 for every supported key: matches P-256's strength and is what peers expect."""
    del key
    return hashes.SHA256()


def private_key_to_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with the best scheme the library offers when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    else:
        if len(passphrase) < MIN_PASSPHRASE_BYTES:
            raise ValueError(f"passphrase must be at least {MIN_PASSPHRASE_BYTES} bytes")
        encryption = serialization.BestAvailableEncryption(passphrase)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def private_key_from_pem(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Parse a PEM private key; typed errors tell a missing passphrase from a wrong one."""
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:
        # cryptography signals "encrypted but no password" and "password given for a clear key"
        # with TypeError; only the first is something a caller can fix by asking.
        if passphrase is None:
            raise PassphraseRequired("the private key is encrypted: a passphrase is needed") from exc
        raise KeyFileError("the private key is not encrypted but a passphrase was given") from exc
    except ValueError as exc:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise WrongPassphrase("the passphrase does not decrypt the private key") from exc
        raise KeyFileError(f"not a usable PEM private key: {exc}") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return key
    raise KeyFileError(f"unsupported private key type {type(key).__name__}: use EC or RSA")


def write_file_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a mix.

    The temporary file is created with `mode` by os.open itself, so a private key is never,
    even briefly, readable by others (umask can only remove bits, not add them).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX: a rename lives in the directory's data)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_private_key(path: Path, key: PrivateKey, passphrase: bytes | None = None) -> None:
    """Store a private key as PEM, mode 0600, atomically; encrypted when a passphrase is given."""
    write_file_atomically(path, private_key_to_pem(key, passphrase), PRIVATE_KEY_FILE_MODE)


def load_private_key(path: Path, passphrase: bytes | None = None) -> PrivateKey:
    """Read a private key stored by `save_private_key` (or any PKCS#8/traditional PEM key)."""
    return private_key_from_pem(Path(path).read_bytes(), passphrase)


def create_csr(
    key: PrivateKey,
    subject: x509.Name,
    subject_alternative_names: Sequence[x509.GeneralName] = (),
) -> x509.CertificateSigningRequest:
    """A PKCS#10 request, for a gateway asking an outside CA for its certificates."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if subject_alternative_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(subject_alternative_names)), critical=False
        )
    return builder.sign(key, signature_hash_for(key))
