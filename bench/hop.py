"""What one SOAP round trip costs each gateway in CPU, step by step, without sockets.

Usage: .venv/bin/python bench/hop.py [--rounds 2000]

Replays the sans-IO work of the consumer gateway (gw-a) and the provider gateway (gw-b) for
the getPerson request of bench/roundtrip.py: parsing, manifest digests, one batch signature of
one message per hop (the concurrency-1 case: every batch is new, so every verification is
uncached), transport encoding and decoding, signature verification and the requestHash.
Each step is timed on its own in CPU time of this thread (the best of several passes, µs per
call), so the figures hold on a machine shared with other work, where the wall-clock figures
of bench/roundtrip.py swing.
What it leaves out is the HTTP and TLS handling of aiohttp and the kernel.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from bench.roundtrip import SOAP_REQUEST  # noqa: E402
from gateway.crypto import rootsig  # noqa: E402
from gateway.crypto.batchsigner import BatchSigner  # noqa: E402
from gateway.crypto.certs import member_of  # noqa: E402
from gateway.crypto.rootsig import MessageSignature, verify_message_signature  # noqa: E402
from gateway.ids import ClientId  # noqa: E402
from gateway.protocol import mime, soap  # noqa: E402
from gateway.protocol.transport import (  # noqa: E402
    Direction,
    SoapPayload,
    TransportMessage,
    decode_transport,
    encode_transport,
    manifest_digest,
    signed_parts,
)
from gateway.trust import pki  # noqa: E402

CONTENT_TYPE = "text/xml; charset=UTF-8"
MAX_BYTES = 10 * 1024 * 1024
PASSES = 5
CONSUMER = ClientId("DEV", "GOV", "1001")
PROVIDER = ClientId("DEV", "GOV", "1002")

SERVICE_RESPONSE = (
    SOAP_REQUEST.replace("<pr:getPerson>", "<pr:getPersonResponse><pr:person>")
    .replace("</pr:getPerson>", "<pr:name>Mart Tamm</pr:name></pr:person></pr:getPersonResponse>")
    .encode()
)


class Steps:
    """Times named steps, each run `rounds` times per pass; keeps the fastest pass."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.rows: list[tuple[str, str, float]] = []

    def time(self, hop: str, name: str, step: Callable[[], object]) -> None:
        step()
        passes = []
        for _ in range(PASSES):
            start = time.thread_time()
            for _ in range(self.rounds):
                step()
            passes.append((time.thread_time() - start) / self.rounds * 1e6)
        self.rows.append((hop, name, min(passes)))


def lone_signature(signer: BatchSigner, leaf: bytes) -> Callable[[], MessageSignature]:
    """One message signed alone, as at concurrency 1: the signer's own scheduling included."""
    loop = asyncio.new_event_loop()
    return lambda: loop.run_until_complete(signer.sign(leaf))


def sign_and_encode(steps: Steps, hop: str, signer: BatchSigner, payload: SoapPayload) -> tuple[str, bytes]:
    """What a gateway does to send `payload`, timed: manifest digest, batch signature, encoding."""
    leaf = manifest_digest(signed_parts(payload))
    steps.time(hop, "manifest digest", lambda: manifest_digest(signed_parts(payload)))
    sign = lone_signature(signer, leaf)
    steps.time(hop, "batch signature, one message", sign)
    message = TransportMessage(payload, sign())
    steps.time(hop, "encode transport", lambda: encode_transport(message))
    return encode_transport(message)


def decode(steps: Steps, hop: str, content_type: str, body: bytes, direction: Direction) -> TransportMessage:
    """What a gateway does first with what it receives, timed: decoding the transport message."""

    def decode_message() -> TransportMessage:
        return decode_transport(content_type, body, max_bytes=MAX_BYTES, direction=direction)

    steps.time(hop, "decode transport", decode_message)
    return decode_message()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory() as tmp:
        ca = pki.init_pki(Path(tmp), now=now)
    keys = {member: ec.generate_private_key(ec.SECP256R1()) for member in (CONSUMER, PROVIDER)}
    certs = {
        member: pki.issue_certificate(ca, pki.MemberSigningProfile(member), key.public_key(), now)
        for member, key in keys.items()
    }
    trusted = [ca.certificate]
    signer_a = BatchSigner(keys[CONSUMER], certs[CONSUMER])
    signer_b = BatchSigner(keys[PROVIDER], certs[PROVIDER])
    steps = Steps(args.rounds)
    request = SOAP_REQUEST.encode()

    # gw-a, the request: parse, sign, encode.
    parsed_request = soap.parse_request(request, CONTENT_TYPE)
    steps.time("gw-a", "parse the client's SOAP request", lambda: soap.parse_request(request, CONTENT_TYPE))
    request_type, request_body = sign_and_encode(steps, "gw-a", signer_a, SoapPayload(CONTENT_TYPE, request))

    # gw-b: decode, parse, verify, then the service's answer: requestHash, sign, encode.
    received = decode(steps, "gw-b", request_type, request_body, Direction.REQUEST)
    steps.time("gw-b", "parse the SOAP request", lambda: soap.parse_request(request, CONTENT_TYPE))
    steps.time("gw-b", "verify signature (uncached)", verify_uncached(received, trusted, CONSUMER))

    def hashed_answer() -> bytes:
        soap.parse_response(SERVICE_RESPONSE, CONTENT_TYPE)
        package = mime.unpack(SERVICE_RESPONSE, CONTENT_TYPE)
        digest = soap.request_hash(parsed_request.soap_bytes)
        hashed = soap.set_request_hash(package.soap, digest, charset=package.charset)
        return mime.replace_soap_part(SERVICE_RESPONSE, CONTENT_TYPE, hashed)

    steps.time("gw-b", "check the answer, set requestHash", hashed_answer)
    answer_payload = SoapPayload(CONTENT_TYPE, hashed_answer())
    answer_type, answer_body = sign_and_encode(steps, "gw-b", signer_b, answer_payload)

    # gw-a, the answer: decode, verify, parse, compare with the request.
    answer = decode(steps, "gw-a", answer_type, answer_body, Direction.RESPONSE)
    steps.time("gw-a", "verify signature (uncached)", verify_uncached(answer, trusted, PROVIDER))

    def check_answer() -> None:
        response = soap.parse_response(answer.payload.body, CONTENT_TYPE)
        soap.check_response_consistency(parsed_request, response)

    steps.time("gw-a", "parse the answer, check consistency", check_answer)
    report(steps)


def verify_uncached(
    message: TransportMessage, trusted: list[x509.Certificate], expected: ClientId
) -> Callable[[], None]:
    """Verification as at concurrency 1, where every batch root is new: the root cache is emptied."""

    def verify() -> None:
        rootsig._verified_roots.clear()
        verified = verify_message_signature(message.signature.leaf, message.signature, trusted)
        assert member_of(verified.signer_cert) == expected

    return verify


def report(steps: Steps) -> None:
    print(f"{'hop':<5} {'step':<38} {'µs':>8}")
    for hop, name, micros in steps.rows:
        print(f"{hop:<5} {name:<38} {micros:>8.1f}")
    for hop in ("gw-a", "gw-b"):
        total = sum(micros for h, _, micros in steps.rows if h == hop)
        print(f"{hop:<5} {'total per round trip':<38} {total:>8.1f}")


if __name__ == "__main__":
    main()
