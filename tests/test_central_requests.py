"""Signed registration requests, sans-IO: what verifies, what is refused, and openssl's view of it.

Certificates come from the development CA (`gateway.trust.pki`), as a real federation's
gateways would get them; a second, untrusted CA issues the impostors.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from gateway.central.requests import (
    MAX_REQUEST_AGE,
    MalformedRequest,
    RegistrationRequest,
    RequestType,
    UntrustedRequest,
    build_signed_request,
    new_request,
    read_signed_request,
    request_from_json,
    request_to_json,
    verify_signed_request,
)
from gateway.crypto.certs import certificate_to_pem
from gateway.crypto.keys import PrivateKey, load_private_key
from gateway.globalconf.signed import canonical_json
from gateway.ids import ClientId, SecurityServerId
from gateway.trust import pki

OWNER = ClientId("DEV", "GOV", "1001")
OTHER = ClientId("DEV", "COM", "2002")
THIRD = ClientId("DEV", "COM", "3003")
SERVER = SecurityServerId("DEV", "GOV", "1001", "gw1")
SUBSYSTEM = ClientId("DEV", "COM", "2002", "crm")


@dataclass(frozen=True)
class Pair:
    certificate: x509.Certificate
    key: PrivateKey
    cert_path: Path


@dataclass(frozen=True)
class Pki:
    ca: x509.Certificate
    auth: Pair  # SERVER's TLS authentication certificate
    owner: Pair  # OWNER's signing certificate
    other: Pair  # OTHER's signing certificate
    third: Pair  # THIRD's signing certificate: a member with no say over OTHER's subsystems
    other_server_auth: Pair  # a TLS certificate naming another gateway of OWNER
    impostor: Pair  # "OWNER"'s signing certificate from an untrusted CA


def _issue(directory: Path, ca: pki.CertificateAuthority, profile: pki.CertificateProfile, name: str) -> Pair:
    issued = pki.issue(directory, ca, profile, out_prefix=directory / "out" / name)
    return Pair(issued.certificate, load_private_key(issued.key_path), issued.certificate_path)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    trusted_dir, untrusted_dir = tmp_path_factory.mktemp("trusted"), tmp_path_factory.mktemp("untrusted")
    trusted = pki.init_pki(trusted_dir)
    untrusted = pki.init_pki(untrusted_dir, settings=pki.CaSettings(common_name="someone else's CA"))
    return Pki(
        ca=trusted.certificate,
        auth=_issue(trusted_dir, trusted, pki.GatewayProfile(SERVER), "auth"),
        owner=_issue(trusted_dir, trusted, pki.MemberSigningProfile(OWNER), "owner"),
        other=_issue(trusted_dir, trusted, pki.MemberSigningProfile(OTHER), "other"),
        third=_issue(trusted_dir, trusted, pki.MemberSigningProfile(THIRD), "third"),
        other_server_auth=_issue(
            trusted_dir, trusted, pki.GatewayProfile(SecurityServerId("DEV", "GOV", "1001", "gw2")), "gw2"
        ),
        impostor=_issue(untrusted_dir, untrusted, pki.MemberSigningProfile(OWNER), "impostor"),
    )


NOW = dt.datetime.now(dt.UTC)


def registration(keys: Pki, *, auth: Pair | None = None, now: dt.datetime = NOW) -> RegistrationRequest:
    auth = auth or keys.auth
    return new_request(
        RequestType.AUTH_CERT_REGISTRATION,
        OWNER,
        now,
        server=SERVER,
        address="gw1.dev.example:5500",
        auth_certificate=certificate_to_pem(auth.certificate).decode(),
        replaces=None,
    )


def signed_registration(keys: Pki, **options: Any) -> bytes:
    return build_signed_request(
        registration(keys, **options), keys.owner.key, keys.owner.certificate, auth_key=keys.auth.key
    )


def verify(keys: Pki, data: bytes, now: dt.datetime = NOW) -> RegistrationRequest:
    return verify_signed_request(data, [keys.ca], now, instance="DEV").request


def _edit(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    container = json.loads(data)
    change(container)
    return canonical_json(container)


def _edit_content(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    def edit(container: dict[str, Any]) -> None:
        content = json.loads(base64.b64decode(container["content"]))
        change(content)
        container["content"] = base64.b64encode(canonical_json(content)).decode()

    return _edit(data, edit)


# --- what verifies ----------------------------------------------------------------------------


def test_a_registration_signed_by_the_owner_and_the_auth_key_verifies(keys: Pki) -> None:
    request = registration(keys)
    data = build_signed_request(request, keys.owner.key, keys.owner.certificate, auth_key=keys.auth.key)
    verified = verify_signed_request(data, [keys.ca], NOW, instance="DEV")
    assert verified.request == request
    assert verified.member_certificate == keys.owner.certificate
    assert read_signed_request(data) == request


def test_content_round_trips_and_is_canonical(keys: Pki) -> None:
    request = new_request(RequestType.CLIENT_REGISTRATION, OWNER, NOW, server=SERVER, client=SUBSYSTEM)
    content = request_to_json(request)
    assert request_from_json(content) == request
    assert content == canonical_json(json.loads(content))
    assert set(json.loads(content)) == {"format", "type", "member", "created_at", "nonce", "server", "client"}


def test_openssl_verifies_the_member_signature(keys: Pki, tmp_path: Path) -> None:
    """The signature is plain ECDSA/SHA-256 over the content bytes: anyone can check it."""
    container = json.loads(signed_registration(keys))
    member = next(s for s in container["signatures"] if s["role"] == "member")
    (tmp_path / "content").write_bytes(base64.b64decode(container["content"]))
    (tmp_path / "sig").write_bytes(base64.b64decode(member["value"]))
    (tmp_path / "signer.pem").write_text(member["certificate"])
    pub = subprocess.run(
        ["openssl", "x509", "-in", tmp_path / "signer.pem", "-pubkey", "-noout"],
        capture_output=True,
        check=True,
    ).stdout
    (tmp_path / "pub.pem").write_bytes(pub)
    checked = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            tmp_path / "pub.pem",
            "-signature",
            tmp_path / "sig",
            tmp_path / "content",
        ],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0 and "Verified OK" in checked.stdout, checked.stdout + checked.stderr


def hosting(keys: Pki, consent: Pair, *, client: ClientId = SUBSYSTEM) -> bytes:
    """SERVER (OWNER's) asks to host `client`, `consent` signing as the subsystem's member."""
    request = new_request(RequestType.CLIENT_REGISTRATION, OWNER, NOW, server=SERVER, client=client)
    return build_signed_request(
        request,
        keys.owner.key,
        keys.owner.certificate,
        client_key=consent.key,
        client_cert=consent.certificate,
    )


def test_a_hosting_request_carries_the_owners_and_the_subsystems_members_signatures(keys: Pki) -> None:
    verified = verify_signed_request(hosting(keys, keys.other), [keys.ca], NOW, instance="DEV")
    assert verified.request.client == SUBSYSTEM
    assert verified.member_certificate == keys.owner.certificate
    assert verified.client_certificate == keys.other.certificate
    # The owner's own subsystem: one key signs as both.
    own = verify_signed_request(
        hosting(keys, keys.owner, client=ClientId("DEV", "GOV", "1001", "benefits")),
        [keys.ca],
        NOW,
        instance="DEV",
    )
    assert own.client_certificate == keys.owner.certificate


# --- what is refused --------------------------------------------------------------------------


def test_a_hosting_request_without_the_subsystems_member_is_refused(keys: Pki) -> None:
    """Build 11 / hole 10: the owner alone cannot make its gateway host another member's subsystem."""
    data = _edit(
        hosting(keys, keys.other),
        lambda c: c.update(signatures=[s for s in c["signatures"] if s["role"] == "member"]),
    )
    with pytest.raises(UntrustedRequest, match="needs the consent of its member DEV/COM/2002"):
        verify(keys, data)


def test_a_hosting_request_consented_by_a_third_member_is_refused(keys: Pki) -> None:
    with pytest.raises(UntrustedRequest, match="signed by DEV/COM/3003, not by its member DEV/COM/2002"):
        verify(keys, hosting(keys, keys.third))
    # Nor by the owner's key standing in for the subsystem's member.
    with pytest.raises(UntrustedRequest, match="signed by DEV/GOV/1001, not by its member DEV/COM/2002"):
        verify(keys, hosting(keys, keys.owner))


def test_a_consent_signature_over_other_content_or_from_an_untrusted_ca_is_refused(keys: Pki) -> None:
    honest = hosting(keys, keys.other)
    other_content = json.loads(
        hosting(keys, keys.other, client=ClientId("DEV", "COM", "2002", "erp"))
    )  # a consent to host another subsystem, grafted on

    def graft(container: dict[str, Any]) -> None:
        forged = next(s for s in other_content["signatures"] if s["role"] == "client")
        container["signatures"] = [s for s in container["signatures"] if s["role"] != "client"] + [forged]

    with pytest.raises(UntrustedRequest, match="client signature: the signature does not match"):
        verify(keys, _edit(honest, graft))
    # The impostor's certificate names OWNER, but comes from an untrusted CA.
    with pytest.raises(UntrustedRequest, match="client member signing certificate"):
        verify(keys, hosting(keys, keys.impostor, client=ClientId("DEV", "GOV", "1001", "benefits")))


def test_changed_content_is_refused(keys: Pki) -> None:
    data = _edit_content(signed_registration(keys), lambda c: c.update(address="evil.example:5500"))
    with pytest.raises(UntrustedRequest, match="signature does not match"):
        verify(keys, data)


def test_an_auth_signature_by_another_key_is_refused(keys: Pki) -> None:
    """Proof of possession: the auth signature must be made with the registered certificate's key."""
    honest = json.loads(signed_registration(keys))
    forged_source = json.loads(
        build_signed_request(
            registration(keys, auth=keys.other_server_auth),
            keys.owner.key,
            keys.owner.certificate,
            auth_key=keys.other_server_auth.key,
        )
    )

    def swap(container: dict[str, Any]) -> None:
        forged = next(s for s in forged_source["signatures"] if s["role"] == "auth")
        for signature in container["signatures"]:
            if signature["role"] == "auth":
                signature["value"] = forged["value"]

    with pytest.raises(UntrustedRequest, match="auth signature"):
        verify(keys, _edit(canonical_json(honest), swap))


def test_a_registration_without_the_auth_signature_is_refused(keys: Pki) -> None:
    data = _edit(
        signed_registration(keys),
        lambda c: c.update(signatures=[s for s in c["signatures"] if s["role"] == "member"]),
    )
    with pytest.raises(UntrustedRequest, match="signed by exactly"):
        verify(keys, data)


def test_a_signing_certificate_of_another_member_is_refused(keys: Pki) -> None:
    data = build_signed_request(
        registration(keys), keys.other.key, keys.other.certificate, auth_key=keys.auth.key
    )
    with pytest.raises(UntrustedRequest, match=r"names DEV/COM/2002, not DEV/GOV/1001"):
        verify(keys, data)


def test_a_signing_certificate_from_an_untrusted_ca_is_refused(keys: Pki) -> None:
    data = build_signed_request(
        registration(keys), keys.impostor.key, keys.impostor.certificate, auth_key=keys.auth.key
    )
    with pytest.raises(UntrustedRequest, match="member signing certificate"):
        verify(keys, data)


def test_an_auth_certificate_naming_another_gateway_is_refused(keys: Pki) -> None:
    request = registration(keys, auth=keys.other_server_auth)
    data = build_signed_request(
        request, keys.owner.key, keys.owner.certificate, auth_key=keys.other_server_auth.key
    )
    with pytest.raises(UntrustedRequest, match="names DEV/GOV/1001/gw2, not DEV/GOV/1001/gw1"):
        verify(keys, data)


def test_stale_future_and_foreign_requests_are_refused(keys: Pki) -> None:
    old = signed_registration(keys, now=NOW - MAX_REQUEST_AGE - dt.timedelta(seconds=1))
    with pytest.raises(UntrustedRequest, match="too long ago"):
        verify(keys, old)
    future = signed_registration(keys, now=NOW + dt.timedelta(hours=1))
    with pytest.raises(UntrustedRequest, match="in the future"):
        verify(keys, future)
    with pytest.raises(UntrustedRequest, match="instance"):
        verify_signed_request(signed_registration(keys), [keys.ca], NOW, instance="PROD")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(extra=1), "unknown field"),
        (lambda c: c.pop("nonce"), "missing field"),
        (lambda c: c.update(type="world_domination"), "unknown request type"),
        (lambda c: c.update(format="xgate-registration-request/2"), "unknown format"),
        (lambda c: c.update(created_at="2026-11-27 10:00:00"), "RFC 3339"),
        (lambda c: c.update(address=5500), "expected a string"),
        (lambda c: c.update(address="no-port"), "host:port"),
        (lambda c: c.update(server="DEV/COM/2002/gw9"), "owner member"),
        (lambda c: c.update(replaces="abc"), "SHA-256"),
    ],
)
def test_content_is_parsed_strictly(
    keys: Pki, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    with pytest.raises(MalformedRequest, match=message):
        verify(keys, _edit_content(signed_registration(keys), change))


def test_container_is_parsed_strictly(keys: Pki) -> None:
    data = signed_registration(keys)
    with pytest.raises(MalformedRequest, match="duplicate key"):
        verify(keys, data[:-1] + b',"format":"x"}')
    with pytest.raises(MalformedRequest, match="not JSON"):
        verify(keys, b"\xff")
    with pytest.raises(MalformedRequest, match="unknown role"):
        verify(keys, _edit(data, lambda c: c["signatures"][0].update(role="admin")))
    with pytest.raises(MalformedRequest, match="at most"):
        verify(keys, b" " * (256 * 1024 + 1))


def test_who_may_ask_for_what(keys: Pki) -> None:
    with pytest.raises(MalformedRequest, match="its own member"):
        new_request(RequestType.SUBSYSTEM_DELETION, OWNER, NOW, client=SUBSYSTEM)
    with pytest.raises(MalformedRequest, match="owner member"):
        new_request(RequestType.SERVER_DELETION, OTHER, NOW, server=SERVER)
    with pytest.raises(MalformedRequest, match="needs client"):
        new_request(RequestType.CLIENT_REGISTRATION, OWNER, NOW, server=SERVER)
    with pytest.raises(MalformedRequest, match="takes no server"):
        new_request(RequestType.MEMBER_DELETION, OWNER, NOW, server=SERVER)
    with pytest.raises(MalformedRequest, match="must be a subsystem"):
        new_request(RequestType.CLIENT_REGISTRATION, OWNER, NOW, server=SERVER, client=OTHER)
    with pytest.raises(ValueError, match="needs auth_key"):
        build_signed_request(registration(keys), keys.owner.key, keys.owner.certificate)
    with pytest.raises(ValueError, match="needs client_key and client_cert"):
        build_signed_request(
            new_request(RequestType.CLIENT_REGISTRATION, OWNER, NOW, server=SERVER, client=SUBSYSTEM),
            keys.owner.key,
            keys.owner.certificate,
        )
    with pytest.raises(ValueError, match="takes no client_key"):
        build_signed_request(
            registration(keys),
            keys.owner.key,
            keys.owner.certificate,
            auth_key=keys.auth.key,
            client_key=keys.other.key,
            client_cert=keys.other.certificate,
        )
    with pytest.raises(ValueError, match="not for the signing key"):
        build_signed_request(
            registration(keys), keys.other.key, keys.owner.certificate, auth_key=keys.auth.key
        )
