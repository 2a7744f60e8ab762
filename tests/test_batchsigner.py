"""Root signatures and the batch signer, with real keys, a real CA and the real `xmlsec1`.

`xmlsec1` is the independent verifier (DESIGN.md "Signature formats are standard"): what
xgate signs, it must accept, and it must refuse the same document once tampered with.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.crypto.batchsigner import BatchSigner, MessageSignature, verify_message_signature
from gateway.crypto.hashtree import root_from_proof
from gateway.crypto.keys import PrivateKey
from gateway.crypto.rootsig import (
    RootSigner,
    SignatureVerificationError,
    sign_root,
    verify_root_signature,
)
from gateway.trust.pki import key_usage
from tests.certs import certificate_builder, common_name

NOW = dt.datetime.now(dt.UTC)
XMLSEC1_ID_ATTR = ("--id-attr:Id", "urn:xgate:signature:1:SignedRoot")


# --- a tiny PKI, shared with test_transport ------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A CA and one signer it certified."""

    ca_key: PrivateKey
    ca: x509.Certificate
    key: PrivateKey
    cert: x509.Certificate

    def ca_pem(self) -> bytes:
        return self.ca.public_bytes(serialization.Encoding.PEM)


def new_key(kind: str) -> PrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_ca(key: PrivateKey, name: str = "xgate test CA") -> x509.Certificate:
    subject = common_name(name)
    return (
        certificate_builder(
            subject, subject, key.public_key(), NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30)
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def issue(
    ca_key: PrivateKey,
    ca: x509.Certificate,
    key: PrivateKey,
    *,
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=10),
    usage: x509.KeyUsage | None = None,
) -> x509.Certificate:
    return (
        certificate_builder(
            common_name("member 1001 signing"), ca.subject, key.public_key(), not_before, not_after
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage or key_usage(digital_signature=True, content_commitment=True), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def make_pki(kind: str) -> Pki:
    ca_key = new_key("ec")
    ca = make_ca(ca_key)
    key = new_key(kind)
    return Pki(ca_key, ca, key, issue(ca_key, ca, key))


@pytest.fixture(scope="module", params=["ec", "rsa"])
def pki(request: pytest.FixtureRequest) -> Pki:
    return make_pki(request.param)


@pytest.fixture(scope="module")
def ec_pki() -> Pki:
    return make_pki("ec")


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def xmlsec1_verify(tmp_path: Path, document: bytes, ca_pem: bytes) -> subprocess.CompletedProcess[str]:
    (tmp_path / "signed.xml").write_bytes(document)
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    return subprocess.run(
        ["xmlsec1", "--verify", *XMLSEC1_ID_ATTR, "--trusted-pem", "ca.pem", "signed.xml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def xmlsec1_sign(tmp_path: Path, template: bytes, pki: Pki) -> bytes:
    """The same template signed by `xmlsec1` itself, without the XML declaration it adds."""
    (tmp_path / "template.xml").write_bytes(template)
    (tmp_path / "key.pem").write_bytes(
        pki.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "cert.pem").write_bytes(pki.cert.public_bytes(serialization.Encoding.PEM))
    subprocess.run(
        [
            "xmlsec1",
            "--sign",
            *XMLSEC1_ID_ATTR,
            "--privkey-pem",
            "key.pem,cert.pem",
            "--output",
            "signed-by-xmlsec1.xml",
            "template.xml",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
        check=True,
    )
    signed = (tmp_path / "signed-by-xmlsec1.xml").read_bytes()
    return signed.removeprefix(b'<?xml version="1.0"?>\n').removesuffix(b"\n")


def blank(document: bytes, *elements: str) -> bytes:
    """`document` with the content of each named ds: element emptied."""
    for name in elements:
        document = re.sub(
            rf"<ds:{name}>[^<]*</ds:{name}>".encode(), f"<ds:{name}></ds:{name}>".encode(), document
        )
    return document


# --- the signed root -----------------------------------------------------------------------


def test_signed_root_verifies_and_says_what_was_signed(pki: Pki) -> None:
    root = digest("batch root")
    document = sign_root(root, pki.key, pki.cert, NOW)
    verified = verify_root_signature(document, [pki.ca])
    assert verified.root == root
    assert verified.signer_cert == pki.cert
    assert abs(verified.signing_time - NOW) < dt.timedelta(milliseconds=1)
    expected_method = "ecdsa-sha256" if isinstance(pki.key, ec.EllipticCurvePrivateKey) else "rsa-sha256"
    assert f'Algorithm="http://www.w3.org/2001/04/xmldsig-more#{expected_method}"'.encode() in document


def test_xmlsec1_accepts_the_signed_root_and_refuses_it_tampered(pki: Pki, tmp_path: Path) -> None:
    document = sign_root(digest("root for xmlsec1"), pki.key, pki.cert, NOW)
    accepted = xmlsec1_verify(tmp_path, document, pki.ca_pem())
    assert accepted.returncode == 0, accepted.stderr
    assert "OK" in accepted.stdout + accepted.stderr

    other_root = digest("another root")
    tampered = re.sub(
        rb"<xg:Root>[^<]*</xg:Root>", b"<xg:Root>" + base64.b64encode(other_root) + b"</xg:Root>", document
    )
    assert tampered != document
    refused = xmlsec1_verify(tmp_path, tampered, pki.ca_pem())
    assert refused.returncode != 0
    with pytest.raises(SignatureVerificationError, match="does not verify"):
        verify_root_signature(tampered, [pki.ca])

    backdated = re.sub(rb"<xg:SigningTime>\d{4}", b"<xg:SigningTime>%d" % (NOW.year - 1), document)
    assert backdated != document
    assert xmlsec1_verify(tmp_path, backdated, pki.ca_pem()).returncode != 0


def test_xmlsec1_refuses_a_signer_from_another_ca(ec_pki: Pki, tmp_path: Path) -> None:
    document = sign_root(digest("root"), ec_pki.key, ec_pki.cert, NOW)
    stranger = make_ca(new_key("ec"), "some other CA")
    result = xmlsec1_verify(tmp_path, document, stranger.public_bytes(serialization.Encoding.PEM))
    assert result.returncode != 0


def test_xmlsec1_writes_the_same_document_and_we_accept_its_signature(pki: Pki, tmp_path: Path) -> None:
    """Signing and verifying without xmlsec's engine must still be XML-DSig exactly as xmlsec does it."""
    root = digest("root xmlsec1 signs too")
    ours = sign_root(root, pki.key, pki.cert, NOW)
    template = blank(ours, "DigestValue", "SignatureValue").replace(
        re.search(rb"<ds:X509Certificate>[^<]*</ds:X509Certificate>", ours).group(0),  # type: ignore[union-attr]
        b"<ds:X509Certificate/>",
    )
    theirs = xmlsec1_sign(tmp_path, template, pki)
    assert verify_root_signature(theirs, [pki.ca]).root == root
    if isinstance(pki.key, rsa.RSAPrivateKey):
        assert theirs == ours  # PKCS#1 v1.5 is deterministic: every byte must agree
    else:
        assert blank(theirs, "SignatureValue") == blank(ours, "SignatureValue")  # ECDSA is randomised


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"</ds:Signature></xg:SignedRoot>", b"</ds:Signature>\n</xg:SignedRoot>"),
        (b"</xg:Root><xg:SigningTime>", b"</xg:Root> <xg:SigningTime>"),
        (b"<xg:Root>", b'<xg:Root Id="root">'),
        (b"<ds:SignatureValue>", b"<ds:SignatureValue>\n  "),
        (b"<ds:KeyInfo>\n", b"<ds:KeyInfo>\n    "),
        (b"<xg:SignedRoot ", b'<xg:SignedRoot xmlns:unused="urn:unused" '),
        (b"<xg:SignedRoot ", b'<xg:SignedRoot xmlns="urn:default" '),
        (b'xmlns:xg="urn:xgate:signature:1" Id="root"', b"Id='root' xmlns:xg=\"urn:xgate:signature:1\""),
        (b"<xg:SigningTime>", b"<xg:SigningTime><![CDATA[]]>"),
        (b"<xg:HashAlgorithm>h", b"<xg:HashAlgorithm>&#104;"),
        (b'#ecdsa-sha256"/>', b'#ecdsa-sha256"></ds:SignatureMethod>'),
        (b"<ds:DigestValue>", b"<ds:DigestValue> "),
        (b"#ecdsa-sha256", b"#rsa-sha256"),
        (b"<ds:SignedInfo>\n", b"<ds:SignedInfo>"),
    ],
)
def test_the_verifier_agrees_with_xmlsec1_on_altered_documents(
    ec_pki: Pki, tmp_path: Path, old: bytes, new: bytes
) -> None:
    """Whatever `xmlsec1` refuses we refuse; what it accepts we accept unless its shape is not ours."""
    document = sign_root(digest("altered"), ec_pki.key, ec_pki.cert, NOW)
    assert document.count(old) >= 1
    altered = document.replace(old, new, 1)
    xmlsec1_accepts = xmlsec1_verify(tmp_path, altered, ec_pki.ca_pem()).returncode == 0
    try:
        verify_root_signature(altered, [ec_pki.ca])
    except SignatureVerificationError:
        we_accept = False
    else:
        we_accept = True
    assert we_accept == xmlsec1_accepts


def test_a_signature_value_of_the_wrong_size_or_from_another_document_fails(ec_pki: Pki) -> None:
    document = sign_root(digest("one"), ec_pki.key, ec_pki.cert, NOW)
    other = sign_root(digest("two"), ec_pki.key, ec_pki.cert, NOW)
    value = re.compile(rb"<ds:SignatureValue>[^<]*</ds:SignatureValue>")
    transplanted = value.sub(value.search(other).group(0), document)  # type: ignore[union-attr]
    with pytest.raises(SignatureVerificationError, match="does not verify"):
        verify_root_signature(transplanted, [ec_pki.ca])
    short = value.sub(
        b"<ds:SignatureValue>" + base64.b64encode(b"\x01" * 63) + b"</ds:SignatureValue>", document
    )
    with pytest.raises(SignatureVerificationError, match="does not verify"):
        verify_root_signature(short, [ec_pki.ca])


def test_untrusted_signer_is_refused_and_the_cache_keeps_trust_sets_apart(ec_pki: Pki) -> None:
    document = sign_root(digest("cached root"), ec_pki.key, ec_pki.cert, NOW)
    assert verify_root_signature(document, [ec_pki.ca]).root == digest("cached root")
    stranger = make_ca(new_key("ec"), "some other CA")
    # The same bytes were just verified and cached, but not against this trust set.
    with pytest.raises(SignatureVerificationError, match="not trusted"):
        verify_root_signature(document, [stranger])
    with pytest.raises(SignatureVerificationError, match="no trust anchors"):
        verify_root_signature(document, [])


def test_certificate_must_be_valid_at_the_signing_time(ec_pki: Pki) -> None:
    key = new_key("ec")
    expired = issue(
        ec_pki.ca_key,
        ec_pki.ca,
        key,
        not_before=NOW - dt.timedelta(hours=20),
        not_after=NOW - dt.timedelta(hours=10),
    )
    with pytest.raises(SignatureVerificationError, match="not trusted"):
        verify_root_signature(sign_root(digest("late"), key, expired, NOW), [ec_pki.ca])
    with pytest.raises(SignatureVerificationError, match="not trusted"):
        verify_root_signature(
            sign_root(digest("early"), key, expired, NOW - dt.timedelta(hours=21)), [ec_pki.ca]
        )
    # Signed while it was valid: still good evidence today.
    in_time = sign_root(digest("in time"), key, expired, NOW - dt.timedelta(hours=15))
    assert verify_root_signature(in_time, [ec_pki.ca]).root == digest("in time")


def test_certificate_must_allow_signatures(ec_pki: Pki) -> None:
    key = new_key("ec")
    cert = issue(ec_pki.ca_key, ec_pki.ca, key, usage=key_usage(key_encipherment=True))
    with pytest.raises(SignatureVerificationError, match="keyUsage"):
        verify_root_signature(sign_root(digest("x"), key, cert, NOW), [ec_pki.ca])


def test_member_signing_certificate_from_the_development_pki_is_accepted() -> None:
    from gateway.ids import ClientId
    from gateway.trust import pki as dev_pki

    ca_key = new_key("ec")
    ca = dev_pki.CertificateAuthority(
        dev_pki.build_ca_certificate(ca_key, "dev CA", NOW), ca_key, dev_pki.CaSettings()
    )
    key = new_key("ec")
    profile = dev_pki.MemberSigningProfile(ClientId("DEV", "GOV", "1001"))
    cert = dev_pki.issue_certificate(ca, profile, key.public_key(), NOW)
    assert (
        verify_root_signature(sign_root(digest("dev"), key, cert, NOW), [ca.certificate]).signer_cert == cert
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ((b'URI="#root"', b'URI=""'), "reference must point"),
        ((b'Id="root"', b'Id="other"'), "Id='root'"),
        ((b"<xg:Root>", b"<!-- hidden --><xg:Root>"), "comments"),
        ((b"</xg:SigningTime>", b"</xg:SigningTime><xg:Root>AAAA</xg:Root>"), "exactly"),
        ((b"xml-exc-c14n#", b"xml-c14n-20010315"), "must be exactly"),
        ((b"xmlenc#sha256</xg:HashAlgorithm>", b"xmldsig#sha1</xg:HashAlgorithm>"), "hash algorithm"),
        ((b"Z</xg:SigningTime>", b"+02:00</xg:SigningTime>"), "UTC"),
    ],
)
def test_only_the_shape_we_sign_is_accepted(ec_pki: Pki, change: tuple[bytes, bytes], reason: str) -> None:
    """Signature wrapping and algorithm games fail on shape before any cryptography is trusted."""
    document = sign_root(digest("shape"), ec_pki.key, ec_pki.cert, NOW)
    old, new = change
    assert old in document
    with pytest.raises(SignatureVerificationError, match=re.escape(reason)):
        verify_root_signature(document.replace(old, new, 1), [ec_pki.ca])


def test_unsafe_xml_is_refused(ec_pki: Pki) -> None:
    document = sign_root(digest("dtd"), ec_pki.key, ec_pki.cert, NOW)
    with pytest.raises(SignatureVerificationError, match="acceptable XML"):
        verify_root_signature(b'<!DOCTYPE x [<!ENTITY e "e">]>' + document, [ec_pki.ca])
    with pytest.raises(SignatureVerificationError, match="acceptable XML"):
        verify_root_signature(document[:-5], [ec_pki.ca])


def test_signer_refuses_a_certificate_for_another_key(ec_pki: Pki) -> None:
    with pytest.raises(ValueError, match="not for this private key"):
        RootSigner(new_key("ec"), ec_pki.cert)
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_root(digest("x"), ec_pki.key, ec_pki.cert, dt.datetime(2026, 1, 1))


# --- the batch signer ----------------------------------------------------------------------


async def test_concurrent_messages_share_one_signature_and_each_proof_verifies(pki: Pki) -> None:
    signer = BatchSigner(pki.key, pki.cert)
    leaves = [digest(f"message {i}") for i in range(100)]
    signatures = await asyncio.gather(*(signer.sign(leaf) for leaf in leaves))
    assert signer.signatures_made == 1
    assert len({s.signed_root_xml for s in signatures}) == 1
    for leaf, signature in zip(leaves, signatures, strict=True):
        assert signature.leaf == leaf
        verified = verify_message_signature(leaf, signature, [pki.ca])
        assert verified.signer_cert == pki.cert
        assert root_from_proof(leaf, signature.proof) == verified.root


async def test_a_swapped_proof_or_leaf_fails(ec_pki: Pki) -> None:
    signer = BatchSigner(ec_pki.key, ec_pki.cert)
    first, second = await asyncio.gather(signer.sign(digest("first")), signer.sign(digest("second")))
    swapped = replace(first, proof=second.proof)
    with pytest.raises(SignatureVerificationError, match="does not lead to the signed root"):
        verify_message_signature(digest("first"), swapped, [ec_pki.ca])
    with pytest.raises(SignatureVerificationError, match="different message"):
        verify_message_signature(digest("second"), first, [ec_pki.ca])
    forged = MessageSignature(first.signed_root_xml, first.proof, digest("forged"))
    with pytest.raises(SignatureVerificationError, match="does not lead"):
        verify_message_signature(digest("forged"), forged, [ec_pki.ca])


async def test_max_batch_splits_a_burst(ec_pki: Pki) -> None:
    signer = BatchSigner(ec_pki.key, ec_pki.cert, max_batch=16)
    signatures = await asyncio.gather(*(signer.sign(digest(str(i))) for i in range(100)))
    assert signer.signatures_made == 7  # ceil(100 / 16)
    assert {len(s.proof) for s in signatures} <= {2, 4}  # 16-leaf batches, and one of 4
    for i, signature in enumerate(signatures):
        verify_message_signature(digest(str(i)), signature, [ec_pki.ca])


async def test_messages_apart_in_time_get_separate_batches(ec_pki: Pki) -> None:
    signer = BatchSigner(ec_pki.key, ec_pki.cert, window_seconds=0.001)
    await signer.sign(digest("early"))
    await signer.sign(digest("late"))
    assert signer.signatures_made == 2


async def test_when_signing_fails_every_waiter_gets_the_error(ec_pki: Pki) -> None:
    def broken_clock() -> dt.datetime:
        return dt.datetime(2026, 1, 1)

    signer = BatchSigner(ec_pki.key, ec_pki.cert, clock=broken_clock)
    results = await asyncio.gather(*(signer.sign(digest(str(i))) for i in range(10)), return_exceptions=True)
    assert all(isinstance(r, ValueError) and "timezone-aware" in str(r) for r in results)
    assert signer.signatures_made == 0


async def test_slow_keys_sign_in_an_executor(pki: Pki) -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        signer = BatchSigner(pki.key, pki.cert, executor=executor, max_batch=8)
        leaves = [digest(f"slow {i}") for i in range(20)]
        signatures = await asyncio.gather(*(signer.sign(leaf) for leaf in leaves))
        await signer.aclose()
    assert signer.signatures_made == 3
    for leaf, signature in zip(leaves, signatures, strict=True):
        verify_message_signature(leaf, signature, [pki.ca])


async def test_a_cancelled_waiter_does_not_disturb_its_batch(ec_pki: Pki) -> None:
    signer = BatchSigner(ec_pki.key, ec_pki.cert, window_seconds=0.05)
    doomed = asyncio.create_task(signer.sign(digest("doomed")))
    kept = asyncio.create_task(signer.sign(digest("kept")))
    await asyncio.sleep(0)
    doomed.cancel()
    signature = await kept
    verify_message_signature(digest("kept"), signature, [ec_pki.ca])
    assert doomed.cancelled()


async def test_aclose_signs_what_is_waiting(ec_pki: Pki) -> None:
    signer = BatchSigner(ec_pki.key, ec_pki.cert, window_seconds=60)
    await asyncio.gather(signer.sign(digest("busy 1")), signer.sign(digest("busy 2")))  # now it waits
    waiting = asyncio.create_task(signer.sign(digest("waiting")))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await signer.aclose()
    signature = await asyncio.wait_for(waiting, 1)
    verify_message_signature(digest("waiting"), signature, [ec_pki.ca])


async def test_a_lone_message_does_not_wait_for_the_window(ec_pki: Pki) -> None:
    """At concurrency 1 every batch holds one message: waiting would only add latency."""
    signer = BatchSigner(ec_pki.key, ec_pki.cert, window_seconds=30)
    for i in range(3):
        signature = await asyncio.wait_for(signer.sign(digest(f"lone {i}")), 5)
        verify_message_signature(digest(f"lone {i}"), signature, [ec_pki.ca])
    assert signer.signatures_made == 3


async def test_once_batches_have_company_the_next_message_waits_the_window(ec_pki: Pki) -> None:
    window = 0.3
    signer = BatchSigner(ec_pki.key, ec_pki.cert, window_seconds=window)
    loop = asyncio.get_running_loop()
    await asyncio.gather(signer.sign(digest("a")), signer.sign(digest("b")))
    started = loop.time()
    await signer.sign(digest("after a shared batch"))
    assert loop.time() - started >= window * 0.9
    # That batch held one message: the signer is idle again and the next one goes at once.
    started = loop.time()
    await signer.sign(digest("idle again"))
    assert loop.time() - started < window * 0.9
    assert signer.signatures_made == 3


async def test_senders_that_keep_sending_keep_sharing_signatures(ec_pki: Pki) -> None:
    """Under sustained load (here 32 senders, 10 messages each) batching holds up."""
    signer = BatchSigner(ec_pki.key, ec_pki.cert)

    async def sender(name: int) -> None:
        for i in range(10):
            await signer.sign(digest(f"sender {name} message {i}"))

    await asyncio.gather(*(sender(n) for n in range(32)))
    assert signer.signatures_made <= 20


async def test_while_a_slow_key_signs_new_messages_gather(ec_pki: Pki) -> None:
    """With an executor, messages that arrive during a signature wait for the next batch together."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        signer = BatchSigner(ec_pki.key, ec_pki.cert, executor=executor, window_seconds=0.05)
        first = asyncio.create_task(signer.sign(digest("first")))
        await asyncio.sleep(0)  # its batch is now with the executor
        later = [asyncio.create_task(signer.sign(digest(f"later {i}"))) for i in range(5)]
        for i in range(5):
            later.append(asyncio.create_task(signer.sign(digest(f"later still {i}"))))
            await asyncio.sleep(0)
        await asyncio.gather(first, *later)
        await signer.aclose()
    assert signer.signatures_made == 2


async def test_sign_rejects_what_is_not_a_digest(ec_pki: Pki) -> None:
    signer = BatchSigner(ec_pki.key, ec_pki.cert)
    with pytest.raises(ValueError, match="32 bytes"):
        await signer.sign(b"not a digest")
    assert signer.signatures_made == 0
