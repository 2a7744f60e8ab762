"""The gateway-to-gateway message: round trips, strictness, and the by-hand check of docs/transport.md.

Independent implementations: Python's `email` package reads the framing, and the shell
script in docs/transport.md (sha256sum, openssl, xmlsec1) re-checks a whole exchange.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import hashlib
import re
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import faults
from gateway.crypto.batchsigner import BatchSigner, MessageSignature, verify_message_signature
from gateway.crypto.hashtree import build_tree
from gateway.crypto.rootsig import RootSigner, SignatureVerificationError
from gateway.faults import XRoadFault
from gateway.protocol.transport import (
    Direction,
    Part,
    Payload,
    RestRequestPayload,
    RestResponsePayload,
    SoapPayload,
    TransportMessage,
    decode_transport,
    encode_transport,
    manifest,
    manifest_digest,
    rest_request_head,
    signed_parts,
)
from tests.test_batchsigner import NOW, Pki, make_pki

DOCS = Path(__file__).resolve().parent.parent / "docs" / "transport.md"
MAX_BYTES = 10 * 1024 * 1024

SOAP = SoapPayload(
    "text/xml; charset=utf-8",
    b'<?xml version="1.0"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<SOAP-ENV:Body><getPerson><id>7</id></getPerson></SOAP-ENV:Body></SOAP-ENV:Envelope>",
)
SOAP_WITH_ATTACHMENT = SoapPayload(
    'multipart/related; type="text/xml"; boundary="MIME_boundary"; start="<soap@x>"',
    b"--MIME_boundary\r\nContent-Type: text/xml\r\nContent-ID: <soap@x>\r\n\r\n<Envelope/>\r\n"
    b"--MIME_boundary\r\nContent-Type: application/octet-stream\r\n\r\n"
    + bytes(range(256)) * 4
    + b"\r\n--xgate-not-ours\r\n--MIME_boundary--\r\n",
)
REST_GET = RestRequestPayload(
    "GET",
    "/r1/DEV/COM/2222/crm/persons/7%2F8",
    "full=1&lang=et",
    (("Accept", "application/json"), ("X-Road-Client", "DEV/GOV/1001/reg"), ("Accept", "text/plain")),
    b"",
)
REST_POST = RestRequestPayload(
    "POST",
    "/r1/DEV/COM/2222/crm/persons",
    "",
    (("Content-Type", "application/json; charset=utf-8"), ("X-Road-UserId", "Jüri Õun")),
    '{"name": "Jüri"}'.encode(),
)
REST_RESPONSE = RestResponsePayload(
    201, (("Content-Type", "application/json"), ("Location", "/persons/8")), b"{}"
)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki("ec")


def sign_all(pki: Pki, payloads: Sequence[Payload]) -> list[TransportMessage]:
    """Sign like the proxy does: leaf = manifest digest, all through one batch signer."""

    async def run() -> list[MessageSignature]:
        signer = BatchSigner(pki.key, pki.cert)
        return await asyncio.gather(*(signer.sign(manifest_digest(signed_parts(p))) for p in payloads))

    signatures = asyncio.run(run())
    return [TransportMessage(p, s) for p, s in zip(payloads, signatures, strict=True)]


def sign_one(pki: Pki, payload: Payload) -> TransportMessage:
    leaf = manifest_digest(signed_parts(payload))
    root, (proof,) = build_tree([leaf])
    return TransportMessage(
        payload, MessageSignature(RootSigner(pki.key, pki.cert).sign(root, NOW), proof, leaf)
    )


def direction_of(payload: Payload) -> Direction:
    return Direction.RESPONSE if isinstance(payload, RestResponsePayload) else Direction.REQUEST


def split_with_email_package(content_type: str, body: bytes) -> list[email.message.EmailMessage]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.message_from_bytes(head + body, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert message.is_multipart() and not message.defects
    return list(message.iter_parts())  # type: ignore[arg-type]


def frame(parts: Sequence[tuple[str, str, bytes]], boundary: str = "b0und") -> tuple[str, bytes]:
    """Build a transport body by hand, to feed the decoder what our encoder would never write."""
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {ctype}\r\nContent-ID: <{name}>\r\n"
        f"Content-Transfer-Encoding: binary\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, ctype, data in parts
    )
    return f"multipart/mixed; boundary={boundary}; xgate-version=1", body + f"--{boundary}--\r\n".encode()


def fault_code(content_type: str, body: bytes, direction: Direction = Direction.REQUEST) -> str:
    with pytest.raises(XRoadFault) as caught:
        decode_transport(content_type, body, max_bytes=MAX_BYTES, direction=direction)
    return caught.value.code


# --- round trips ---------------------------------------------------------------------------


def test_every_kind_of_message_round_trips_and_verifies(pki: Pki) -> None:
    payloads: list[Payload] = [SOAP, SOAP_WITH_ATTACHMENT, REST_GET, REST_POST, REST_RESPONSE]
    for message in sign_all(pki, payloads):
        content_type, body = encode_transport(message)
        assert content_type.startswith("multipart/mixed; boundary=xgate-")
        decoded = decode_transport(
            content_type, body, max_bytes=MAX_BYTES, direction=direction_of(message.payload)
        )
        assert decoded.payload == message.payload
        assert decoded.signature.leaf == manifest_digest(signed_parts(message.payload))
        assert decoded.signature.proof == message.signature.proof
        verified = verify_message_signature(decoded.signature.leaf, decoded.signature, [pki.ca])
        assert verified.signer_cert == pki.cert


def test_the_framing_is_plain_mime_to_an_independent_reader(pki: Pki) -> None:
    soap, rest, attached = sign_all(pki, [SOAP, REST_POST, SOAP_WITH_ATTACHMENT])
    for message in (soap, rest):
        content_type, body = encode_transport(message)
        parts = split_with_email_package(content_type, body)
        expected = [(p.name, p.content_type, p.data) for p in signed_parts(message.payload)]
        assert [
            (p["Content-ID"][1:-1], dict(p.raw_items())["Content-Type"], p.get_payload(decode=True))
            for p in parts[:-1]
        ] == expected
        assert (parts[-1]["Content-ID"], parts[-1].get_content_type()) == ("<signature>", "application/xml")
        assert message.signature.signed_root_xml in parts[-1].get_payload(decode=True)
    # A generic reader opens the SOAP message's own multipart too, and finds it intact.
    content_type, body = encode_transport(attached)
    (message_part, _) = split_with_email_package(content_type, body)
    soap_part, attachment = message_part.iter_parts()
    assert soap_part.get_payload(decode=True) == b"<Envelope/>"
    assert attachment.get_payload(decode=True) == bytes(range(256)) * 4 + b"\r\n--xgate-not-ours"


@settings(max_examples=100, deadline=None)
@given(
    body=st.binary(max_size=2048),
    content_type=st.from_regex(
        r"[a-z]{1,8}/[a-z+.-]{1,12}(; [a-z]{1,8}=\"[ -!#-~]{0,20}\")?", fullmatch=True
    ),
    headers=st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True),
            st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"), max_size=30),
        ),
        max_size=5,
    ),
)
def test_any_bytes_and_headers_survive_the_trip(
    pki: Pki, body: bytes, content_type: str, headers: list[tuple[str, str]]
) -> None:
    for payload in (
        SoapPayload(content_type, body),
        RestRequestPayload("PATCH", "/r1/DEV/COM/2222/crm/x", "q=%20", tuple(headers), body),
        RestResponsePayload(503, tuple(headers), body),
    ):
        message = sign_one(pki, payload)
        encoded = encode_transport(message)
        decoded = decode_transport(*encoded, max_bytes=MAX_BYTES, direction=direction_of(payload))
        assert decoded.payload == payload
        assert decoded.signature == message.signature


# --- manifest and the by-hand check --------------------------------------------------------


def test_manifest_is_the_documented_text_and_sha256sum_agrees(tmp_path: Path) -> None:
    parts = signed_parts(REST_POST)
    text = manifest(parts)
    head_digest = hashlib.sha256(rest_request_head(REST_POST)).hexdigest()
    body_digest = hashlib.sha256(REST_POST.body).hexdigest()
    assert text == (
        b"xgate-manifest/1\n"
        + f"rest-request {head_digest} application/json\n".encode()
        + f"message {body_digest} application/octet-stream\n".encode()
    )
    (tmp_path / "manifest").write_bytes(text)
    sha256sum = subprocess.run(
        ["sha256sum", "manifest"], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=30
    )
    assert sha256sum.stdout.split()[0] == manifest_digest(parts).hex()
    # The content type is part of what is signed.
    retyped = [Part("message", "text/plain", REST_POST.body)]
    assert manifest_digest(retyped) != manifest_digest([Part("message", "text/xml", REST_POST.body)])


def hand_check_script() -> str:
    text = DOCS.read_text()
    block = text.split("<!-- hand-check:begin -->")[1].split("<!-- hand-check:end -->")[0]
    match = re.search(r"```bash\n(.*?)```", block, re.DOTALL)
    assert match is not None
    return match.group(1)


def run_hand_check(
    tmp_path: Path, content_type: str, body: bytes, ca_pem: bytes
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "exchange.ct").write_text(content_type + "\n")
    (tmp_path / "exchange.body").write_bytes(body)
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    return subprocess.run(
        ["bash", "-c", hand_check_script()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_documented_hand_check_passes_on_a_real_exchange(pki: Pki, tmp_path: Path) -> None:
    # Several messages in one batch, so the proof has steps on both sides.
    messages = sign_all(pki, [REST_POST, SOAP, REST_GET, SOAP_WITH_ATTACHMENT, REST_POST])
    assert {step.side for m in messages for step in m.signature.proof} == {"left", "right"}
    for message in (messages[0], messages[3]):
        content_type, body = encode_transport(message)
        result = run_hand_check(tmp_path, content_type, body, pki.ca_pem())
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"leaf digest: {message.signature.leaf.hex()}" in result.stdout
        assert "proof leads to the signed root" in result.stdout
        assert "OK" in result.stdout + result.stderr


def test_the_documented_hand_check_passes_on_a_message_signed_alone(pki: Pki, tmp_path: Path) -> None:
    # A batch of one: the proof has no steps, so the step-5 grep matches nothing (issue 15).
    for message in (sign_one(pki, SOAP), *sign_all(pki, [REST_POST])):
        assert len(message.signature.proof) == 0
        content_type, body = encode_transport(message)
        result = run_hand_check(tmp_path, content_type, body, pki.ca_pem())
        assert result.returncode == 0, result.stdout + result.stderr
        assert "proof leads to the signed root" in result.stdout


def test_the_hand_check_catches_a_changed_byte(pki: Pki, tmp_path: Path) -> None:
    (message,) = sign_all(pki, [SOAP])
    content_type, body = encode_transport(message)
    tampered = body.replace(b"<id>7</id>", b"<id>8</id>")
    assert tampered != body
    result = run_hand_check(tmp_path, content_type, tampered, pki.ca_pem())
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr  # sha256sum --check names the part
    assert fault_code(content_type, tampered) == faults.SERVER_PROXY_INVALID_SIGNATURE


# --- tampering ----------------------------------------------------------------------------


def test_a_consistently_rewritten_manifest_still_fails_the_signature(pki: Pki) -> None:
    """Who changes the message and its listed digest gets past decoding, but not verification."""
    (message,) = sign_all(pki, [SOAP])
    content_type, body = encode_transport(message)
    old_digest = hashlib.sha256(SOAP.body).hexdigest().encode()
    new_body = SOAP.body.replace(b"<id>7</id>", b"<id>8</id>")
    new_digest = hashlib.sha256(new_body).hexdigest().encode()
    forged = body.replace(SOAP.body, new_body).replace(old_digest, new_digest)
    decoded = decode_transport(content_type, forged, max_bytes=MAX_BYTES)
    assert decoded.payload == replace(SOAP, body=new_body)
    with pytest.raises(SignatureVerificationError, match="does not lead to the signed root"):
        verify_message_signature(decoded.signature.leaf, decoded.signature, [pki.ca])


def test_a_changed_content_type_breaks_the_manifest(pki: Pki) -> None:
    (message,) = sign_all(pki, [SOAP])
    content_type, body = encode_transport(message)
    retyped = body.replace(
        b"Content-Type: text/xml; charset=utf-8", b"Content-Type: text/xml; charset=latin1", 1
    )
    assert fault_code(content_type, retyped) == faults.SERVER_PROXY_INVALID_SIGNATURE
    assert fault_code(content_type, retyped, Direction.RESPONSE) == faults.CLIENT_PROXY_INVALID_SIGNATURE


# --- strictness ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoded_soap(pki: Pki) -> tuple[str, bytes]:
    return encode_transport(sign_one(pki, SOAP))


@pytest.mark.parametrize(
    ("mangle_type", "mangle_body"),
    [
        (lambda t: "text/xml", None),
        (lambda t: t.replace("xgate-version=1", "xgate-version=2"), None),
        (lambda t: t.replace("; xgate-version=1", ""), None),
        (lambda t: re.sub(r"boundary=[^;]*", "boundary=other", t), None),
        (lambda t: t.replace("boundary=", "boundary=\x00"), None),
        (None, lambda b: b"preamble\r\n" + b),
        (None, lambda b: b[: b.rindex(b"\r\n--")]),
        (None, lambda b: b + b"epilogue"),
        (None, lambda b: b[:-2]),
        (None, lambda b: b.replace(b"\r\n", b"\n")),
        (None, lambda b: b.replace(b"Content-ID: <message>", b"Content-ID: <message>\r\nX-Extra: 1", 1)),
        (None, lambda b: b.replace(b"Content-Type: text/xml", b"content-type: text/xml", 1)),
        (
            None,
            lambda b: b.replace(
                b"Content-Transfer-Encoding: binary", b"Content-Transfer-Encoding: base64", 1
            ),
        ),
        (None, lambda b: b.replace(b"Content-ID: <message>", b"Content-ID: <attachment>", 1)),
        (None, lambda b: b.replace(b"Content-Type: application/xml", b"Content-Type: text/plain", 1)),
    ],
)
def test_anything_but_the_one_correct_form_is_refused(
    encoded_soap: tuple[str, bytes], mangle_type: object, mangle_body: object
) -> None:
    content_type, body = encoded_soap
    if callable(mangle_type):
        content_type = mangle_type(content_type)
    if callable(mangle_body):
        body = mangle_body(body)
    assert fault_code(content_type, body) == faults.INVALID_CONTENT_TYPE
    assert fault_code(content_type, body, Direction.RESPONSE) == "Server.ClientProxy.InvalidContentType"


def test_size_limit_and_missing_signature(encoded_soap: tuple[str, bytes]) -> None:
    content_type, body = encoded_soap
    with pytest.raises(XRoadFault) as caught:
        decode_transport(content_type, body, max_bytes=len(body) - 1)
    assert caught.value.code == faults.REQUEST_TOO_LARGE
    with pytest.raises(XRoadFault) as caught:
        decode_transport(content_type, body, max_bytes=len(body) - 1, direction=Direction.RESPONSE)
    assert caught.value.code == "Server.ClientProxy.ResponseTooLarge"
    assert decode_transport(content_type, body, max_bytes=len(body)).payload == SOAP

    unsigned_type, unsigned = frame([("message", SOAP.content_type, SOAP.body)])
    assert fault_code(unsigned_type, unsigned) == faults.MISSING_SIGNATURE
    assert fault_code(unsigned_type, unsigned, Direction.RESPONSE) == faults.CLIENT_PROXY_INVALID_SIGNATURE


def test_a_rest_head_goes_only_in_its_own_direction(pki: Pki) -> None:
    request, response = sign_one(pki, REST_GET), sign_one(pki, REST_RESPONSE)
    assert (
        fault_code(*encode_transport(request), Direction.RESPONSE) == "Server.ClientProxy.InvalidContentType"
    )
    assert fault_code(*encode_transport(response), Direction.REQUEST) == faults.INVALID_CONTENT_TYPE


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b'{"headers": [], "method": "GET", "path": "/r1/x", "query": ""}', "canonical"),
        (b'{"headers":[],"method":"GET","path":"/r1/x","query":"","extra":1}', "must hold"),
        (b'{"headers":[],"method":"G T","path":"/r1/x","query":""}', "HTTP token"),
        (b'{"headers":[],"method":"GET","path":"r1/x","query":""}', "absolute path"),
        (b'{"headers":[],"method":"GET","path":"/r1/x?y","query":""}', "absolute path"),
        (b'{"headers":[],"method":"GET","path":"/r1/x","query":"a b"}', "query"),
        (
            b'{"headers":[["X-A","1\\r\\nX-Injected: 2"]],"method":"GET","path":"/r1/x","query":""}',
            "header field",
        ),
        (b'{"headers":[["X A","1"]],"method":"GET","path":"/r1/x","query":""}', "header field"),
        (b'{"headers":[["X-A"]],"method":"GET","path":"/r1/x","query":""}', "pairs"),
        (b'{"headers":[["X-A","\\udc80"]],"method":"GET","path":"/r1/x","query":""}', "header field"),
        (b'["GET"]', "JSON object"),
        (b"\xff", "not JSON"),
    ],
)
def test_rest_request_heads_are_held_to_their_rules(head: bytes, reason: str) -> None:
    content_type, body = frame(
        [
            ("rest-request", "application/json", head),
            ("message", "application/octet-stream", b""),
            ("signature", "application/xml", b"<unchecked/>"),
        ]
    )
    with pytest.raises(XRoadFault, match=re.escape(reason)) as caught:
        decode_transport(content_type, body, max_bytes=MAX_BYTES)
    assert caught.value.code == faults.INVALID_CONTENT_TYPE


@pytest.mark.parametrize("status", [b"99", b"600", b'"200"', b"true", b"200.0"])
def test_rest_response_status_must_be_a_status_code(status: bytes) -> None:
    head = b'{"headers":[],"status":' + status + b"}"
    content_type, body = frame(
        [
            ("rest-response", "application/json", head),
            ("message", "application/octet-stream", b""),
            ("signature", "application/xml", b"<unchecked/>"),
        ]
    )
    with pytest.raises(XRoadFault, match="status"):
        decode_transport(content_type, body, max_bytes=MAX_BYTES, direction=Direction.RESPONSE)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ((b'side="', b'side="up'), "side=left|right"),
        ((b"<xg:Proof>", b'<xg:Proof><xg:Step side="left">AAAA</xg:Step>'), "SHA-256 digest"),
        ((b"</xg:Step>", b"!</xg:Step>"), "not base64"),
        ((b"<xg:Proof>", b"<xg:Proof><xg:Extra/>"), "xg:Step"),
        ((b"<xg:Manifest>", b"<xg:Manifest><xg:Part/>"), "manifest does not match"),
        ((b"<xg:Manifest>", b"<!DOCTYPE d><xg:Manifest>"), "acceptable XML"),
        ((b"</xg:Proof>", b"</xg:Proof><xg:Proof/>"), "MessageSignature(Manifest, Proof, SignedRoot)"),
    ],
)
def test_the_signature_document_has_one_shape(pki: Pki, change: tuple[bytes, bytes], reason: str) -> None:
    message = sign_all(pki, [SOAP, REST_GET])[0]
    content_type, body = encode_transport(message)
    old, new = change
    assert old in body
    with pytest.raises(XRoadFault, match=re.escape(reason)) as caught:
        decode_transport(content_type, body.replace(old, new, 1), max_bytes=MAX_BYTES)
    assert caught.value.code == faults.SERVER_PROXY_INVALID_SIGNATURE


def test_proofs_longer_than_any_batch_are_refused(pki: Pki) -> None:
    message = sign_all(pki, [SOAP, REST_GET])[0]
    content_type, body = encode_transport(message)
    step = re.search(rb"<xg:Step [^>]*>[^<]*</xg:Step>", body)
    assert step is not None
    padded = body.replace(step.group(0), step.group(0) * 33, 1)
    with pytest.raises(XRoadFault, match="longer than 32"):
        decode_transport(content_type, padded, max_bytes=MAX_BYTES)


# --- the encoder ---------------------------------------------------------------------------


def test_the_boundary_never_occurs_in_a_part(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = SoapPayload("application/octet-stream", b"data\r\n--xgate-" + b"0" * 32 + b"\r\nmore")
    message = sign_one(pki, payload)
    candidates = iter(["0" * 32, "1" * 32])
    monkeypatch.setattr("gateway.protocol.transport.secrets.token_hex", lambda n: next(candidates))
    content_type, body = encode_transport(message)
    assert content_type.startswith("multipart/mixed; boundary=xgate-" + "1" * 32)
    assert decode_transport(content_type, body, max_bytes=MAX_BYTES).payload == payload


def test_the_encoder_refuses_what_it_cannot_send_faithfully(pki: Pki) -> None:
    message = sign_one(pki, SOAP)
    with pytest.raises(ValueError, match="different message"):
        encode_transport(replace(message, payload=replace(SOAP, body=b"<other/>")))
    for bad in ("text/xml\r\nX-Injected: 1", "text/xml; name=\u00e4", " text/xml", ""):
        with pytest.raises(ValueError, match="printable ASCII"):
            manifest_digest(signed_parts(SoapPayload(bad, b"<x/>")))
