"""The federation through its central registry, end to end (docs/central.md, docs/globalconf.md).

A gateway joins by asking (`xgate gateway register`, `add-subsystem`), an administrator decides
through the management API, and every gateway learns the outcome from the signed configuration
within one refresh interval; deleting a member or revoking a certificate takes access away the
same way. Gateways keep working on their last good configuration while the registry is down or
serves something forged, until it expires; the registry's signing key rotates without a flag day.

All of it runs on the short-lived federation (conftest.SHORT_TIMES: 1 s refresh, 10 s validity,
8 s OCSP freshness), so expiries and staleness fit in a test.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import requests
from aiohttp import web

from gateway import faults
from gateway.admin.client import AdminApiError
from gateway.central.api_client import client_path
from gateway.central.client import register_server, request_subsystem
from gateway.crypto.certs import load_certificate_file
from gateway.crypto.keys import load_private_key
from gateway.dev import federation
from gateway.globalconf import globalconf_from_json, sign_globalconf
from gateway.ids import ClientId, SecurityServerId
from gateway.protocol.transport import SoapPayload
from gateway.serverconf.access import AccessRight
from gateway.trust.pki import CaSettings, ConfigurationSignerProfile, init_pki, issue, load_ca
from tests.conftest import (
    GET_PERSON,
    HTTP_TIMEOUT_SECONDS,
    KNOWN_PERSON,
    POPULATION,
    REPO,
    Federation,
    assert_soap_fault,
    get_person_body,
    get_person_request,
    ocsp_response,
    peer_status_headers,
    post_soap,
    serving_in_thread,
    soap_body,
    soap_request,
    wait_until,
)
from tests.test_e2e_ocsp import post_to_gw_b
from tests.test_e2e_security import signed_by

NEWCOMER: Final = ClientId("DEV", "GOV", "1004")
NEWCOMER_NAME: Final = "Pension Board"
REVOKED: Final = ClientId("DEV", "GOV", "1005")
GATEWAYS: Final = ("gw-a", "gw-b", "gw-c")
# What it may take beyond one refresh interval: the registry publishes as it approves, but a
# loaded machine runs the gateway's poll and our health check late.
PROPAGATION_MARGIN_SECONDS: Final = 2.0
CLI_TIMEOUT_SECONDS: Final = 60.0


def refresh_seconds(fed: Federation) -> float:
    return float(fed.description["settings"]["refresh_interval_seconds"])


def validity_seconds(fed: Federation) -> float:
    return float(fed.description["settings"]["validity_seconds"])


def xgate(*args: str) -> subprocess.CompletedProcess[str]:
    """The `xgate` command, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=CLI_TIMEOUT_SECONDS,
    )


def subsystem_of(gw: dict[str, Any]) -> ClientId:
    return ClientId.from_text(gw["subsystem"])


def call_from(gw: dict[str, Any]) -> requests.Response:
    """gw's own subsystem asks gw-b's getPerson through gw."""
    return post_soap(gw["internal_http_url"], get_person_request(KNOWN_PERSON, client=subsystem_of(gw)))


def published_version(fed: Federation) -> int:
    """The registry's newest version: what every gateway should run on within a refresh interval."""
    version: int = fed.registry.get("/globalconf")["version"]
    return version


def adopted_everywhere(fed: Federation, version: int) -> bool:
    return all((fed.health(name)["globalconf"]["version"] or 0) >= version for name in GATEWAYS)


def known_everywhere(fed: Federation, server_id: str) -> bool:
    return all(server_id in fed.health(name)["globalconf"]["security_servers"] for name in GATEWAYS)


def listed_clients(fed: Federation) -> set[str]:
    response = requests.get(
        fed.internal_url("gw-a") + "/listClients",
        headers={"Accept": "application/json"},
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    response.raise_for_status()
    return {
        "/".join(
            part
            for part in (
                "DEV",
                member["id"]["member_class"],
                member["id"]["member_code"],
                member["id"].get("subsystem_code"),
            )
            if part
        )
        for member in response.json()["member"]
    }


def approve(fed: Federation, request_id: str) -> None:
    fed.registry.post(f"/requests/{request_id}/approve", {"reason": "checked with the agency"})


@contextlib.contextmanager
def joining_gateway(
    fed: Federation, name: str, member: ClientId, member_name: str
) -> Iterator[dict[str, Any]]:
    """A member the administrator registered and a node it runs, not registered yet; allowed to call
    gw-b's getPerson. Afterwards the node stops and the member and the access right are gone."""
    fed.registry.post(
        "/members",
        {"member_class": member.member_class, "member_code": member.member_code, "name": member_name},
    )
    gw = federation.add_gateway(fed.dir, name, member, member_name, "office")
    right = AccessRight(subsystem_of(gw), "getPerson", None)
    with fed.serverconf("gw-b") as repository:
        repository.grant(POPULATION, right)
    try:
        yield gw
    finally:
        federation.stop_process(fed.dir, name)
        with fed.serverconf("gw-b") as repository:
            repository.revoke(POPULATION, right)
        with contextlib.suppress(AdminApiError):  # a test may have deleted it
            fed.registry.delete(f"/members/{client_path(member.to_text())}")


def register_directly(fed: Federation, gw: dict[str, Any]) -> None:
    """The gateway's two requests through the client library, both approved (when a test is about after)."""
    server = SecurityServerId.from_text(gw["server_id"])
    sign_cert, sign_key = load_certificate_file(Path(gw["sign_cert"])), load_private_key(Path(gw["sign_key"]))
    auth_cert, auth_key = load_certificate_file(Path(gw["auth_cert"])), load_private_key(Path(gw["auth_key"]))
    approve(
        fed,
        register_server(
            fed.registry_url, server, gw["external_address"], auth_cert, auth_key, sign_cert, sign_key
        ).id,
    )
    approve(fed, request_subsystem(fed.registry_url, server, subsystem_of(gw), sign_cert, sign_key).id)


@pytest.fixture(autouse=True)
def ready(short_fed: Federation) -> None:
    """Each test starts from a federation at rest: a test before may have stopped and restarted parts."""
    short_fed.wait_ready()


@pytest.fixture(scope="module")
def newcomer(short_fed: Federation) -> Iterator[dict[str, Any]]:
    with joining_gateway(short_fed, "gw-d", NEWCOMER, NEWCOMER_NAME) as gw:
        yield gw


def ensure_registered(fed: Federation, gw: dict[str, Any]) -> None:
    """The newcomer registered and hosting its subsystem, whatever the tests before did."""
    if not any(m["member_code"] == NEWCOMER.member_code for m in fed.registry.get("/members")["members"]):
        fed.registry.post(
            "/members", {"member_class": "GOV", "member_code": NEWCOMER.member_code, "name": NEWCOMER_NAME}
        )
    if not known_everywhere(fed, gw["server_id"]):
        register_directly(fed, gw)
    wait_until(
        lambda: call_from(gw).status_code == 200, refresh_seconds(fed) + 10, f"{gw['name']} to be served"
    )


# --- joining ----------------------------------------------------------------------------------------


def register_with_cli(fed: Federation, gw: dict[str, Any]) -> dict[str, Any]:
    result = xgate(
        "gateway", "register", "--registry", fed.registry_url, "--config", gw["config"],
        "--address", gw["external_address"], "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_a_pending_or_rejected_gateway_cannot_call(short_fed: Federation, newcomer: dict[str, Any]) -> None:
    fed = short_fed
    request = register_with_cli(fed, newcomer)
    assert request["state"] == "pending" and request["type"] == "auth_cert_registration"

    pending = call_from(newcomer)
    fed.registry.post(f"/requests/{request['id']}/reject", {"reason": "the address is not the agency's"})
    time.sleep(refresh_seconds(fed) + PROPAGATION_MARGIN_SECONDS)  # what a refresh could have brought
    rejected = call_from(newcomer)
    status = xgate("gateway", "status", "--registry", fed.registry_url, request["id"])

    # gw-b does not know the newcomer's certificate, whatever the newcomer's own gateway thinks.
    assert (
        "not registered" in assert_soap_fault(pending, faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED).string
    )
    assert_soap_fault(rejected, faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED)
    assert not known_everywhere(fed, newcomer["server_id"])
    assert status.returncode == 0, status.stderr
    assert "rejected" in status.stdout and "the address is not the agency's" in status.stdout


def test_an_approved_gateway_is_known_everywhere_within_a_refresh_and_can_call(
    short_fed: Federation, newcomer: dict[str, Any]
) -> None:
    fed = short_fed
    approve(fed, register_with_cli(fed, newcomer)["id"])
    hosting = xgate(
        "gateway", "add-subsystem", "--registry", fed.registry_url, "--config", newcomer["config"],
        "--subsystem", newcomer["subsystem"], "--json",
    )  # fmt: skip
    assert hosting.returncode == 0, hosting.stderr
    approve(fed, json.loads(hosting.stdout)["id"])
    approved_at, version = time.monotonic(), published_version(fed)

    wait_until(
        functools.partial(adopted_everywhere, fed, version),
        refresh_seconds(fed) + PROPAGATION_MARGIN_SECONDS,
        f"every gateway to adopt version {version}",
    )
    propagated = time.monotonic() - approved_at
    answer = soap_body(call_from(newcomer))

    assert propagated <= refresh_seconds(fed) + PROPAGATION_MARGIN_SECONDS
    assert known_everywhere(fed, newcomer["server_id"])
    assert answer.tag.endswith("getPersonResponse")
    # listClients is the downloaded configuration's: the new member and its subsystem, by name.
    assert {NEWCOMER.to_text(), newcomer["subsystem"]} <= listed_clients(fed)


def test_a_gateway_cannot_host_another_members_subsystem_without_its_consent(
    short_fed: Federation, newcomer: dict[str, Any]
) -> None:
    """Build 11 / hole 10: the newcomer asks to host gw-a's subsystem, consenting with its own
    key instead of gw-a's member's: the registry refuses, says why, and stores nothing to approve."""
    fed = short_fed
    ensure_registered(fed, newcomer)
    victim = fed.gateway("gw-a")["subsystem"]
    pending_before = fed.registry.get("/requests?state=pending")["requests"]

    unasked = xgate(
        "gateway", "add-subsystem", "--registry", fed.registry_url, "--config", newcomer["config"],
        "--subsystem", victim,
    )  # fmt: skip
    forged = xgate(
        "gateway", "add-subsystem", "--registry", fed.registry_url, "--config", newcomer["config"],
        "--subsystem", victim,
        "--member-sign-cert", newcomer["sign_cert"], "--member-sign-key", newcomer["sign_key"],
    )  # fmt: skip

    member = ClientId.from_text(victim).member.to_text()
    assert unasked.returncode == 2 and f"no signing key for {member}" in unasked.stderr
    assert forged.returncode == 1, forged.stdout
    assert "403 untrusted_request" in forged.stderr
    assert f"signed by {NEWCOMER.to_text()}, not by its member {member}" in forged.stderr
    assert fed.registry.get("/requests?state=pending")["requests"] == pending_before, "nothing to approve"


def test_deleting_a_member_removes_its_access_everywhere(
    short_fed: Federation, newcomer: dict[str, Any]
) -> None:
    fed = short_fed
    ensure_registered(fed, newcomer)

    fed.registry.delete(f"/members/{client_path(NEWCOMER.to_text())}")
    version = published_version(fed)
    wait_until(
        functools.partial(adopted_everywhere, fed, version),
        refresh_seconds(fed) + PROPAGATION_MARGIN_SECONDS,
        f"every gateway to adopt version {version}",
    )

    assert all(newcomer["server_id"] not in fed.health(n)["globalconf"]["security_servers"] for n in GATEWAYS)
    assert_soap_fault(call_from(newcomer), faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED)
    assert not {NEWCOMER.to_text(), newcomer["subsystem"]} & listed_clients(fed)


# --- revocation -------------------------------------------------------------------------------------


def post_as(fed: Federation, gw: dict[str, Any], headers: dict[str, str]) -> requests.Response:
    """gw's signed getPerson request straight to gw-b's external interface, with gw's TLS certificate."""
    request = soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), client=subsystem_of(gw))
    message = signed_by(gw, SoapPayload("text/xml; charset=utf-8", request))
    return post_to_gw_b(fed, gw, message, headers)


def test_a_revoked_tls_certificate_is_refused_within_the_freshness_limit(short_fed: Federation) -> None:
    fed = short_fed
    freshness = float(fed.description["settings"]["ocsp_freshness_seconds"])
    with joining_gateway(fed, "gw-e", REVOKED, "Lottery Office") as gw:
        register_directly(fed, gw)
        wait_until(lambda: call_from(gw).status_code == 200, refresh_seconds(fed) + 10, "gw-e to be served")
        before = peer_status_headers(fed, gw["auth_cert"])

        result = xgate(
            "pki", "revoke", str(fed.pki_dir), "--cert", gw["auth_cert"], "--reason", "keyCompromise", "--yes"
        )
        revoked_at = time.monotonic()
        assert result.returncode == 0, result.stderr
        after = {**before, "XGate-Auth-OCSP": base64.b64encode(ocsp_response(fed, gw["auth_cert"])).decode()}

        # The responder's new answer is refused at once...
        refused_now = post_as(fed, gw, after)
        # ...an answer from before the revocation only as long as it is fresh...
        wait_until(
            lambda: post_as(fed, gw, before).status_code != 200,
            freshness + PROPAGATION_MARGIN_SECONDS,
            "the answer from before the revocation to go stale",
        )
        stale = post_as(fed, gw, before)
        # ...and the gateway itself stops sending once its own renewal says revoked.
        wait_until(
            lambda: call_from(gw).status_code != 200,
            max(0.0, freshness + PROPAGATION_MARGIN_SECONDS - (time.monotonic() - revoked_at)),
            "gw-e to stop using its revoked certificate",
        )
        own = call_from(gw)

    assert "revoked" in assert_soap_fault(refused_now, faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED).string
    assert "older than" in assert_soap_fault(stale, faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED).string
    assert "revoked" in assert_soap_fault(own, faults.SSL_AUTHENTICATION_FAILED).string


# --- the registry away, or impersonated ------------------------------------------------------------


def get_person_through_gw_a(fed: Federation) -> requests.Response:
    return post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON))


def test_traffic_outlives_the_registry_until_the_configuration_expires(short_fed: Federation) -> None:
    fed = short_fed
    federation.stop_process(fed.dir, "registry")
    try:
        still_served = get_person_through_gw_a(fed)
        wait_until(
            lambda: fed.health("gw-a")["globalconf"]["valid"] is False,
            validity_seconds(fed) + PROPAGATION_MARGIN_SECONDS,
            "gw-a's configuration to expire",
        )
        expired = get_person_through_gw_a(fed)
        last_error = fed.health("gw-a")["globalconf"]["last_error"]
    finally:
        federation.start_process(fed.dir, "registry")
    fed.wait_ready(refresh_seconds(fed) + 10)  # every gateway fetches a fresh configuration

    assert soap_body(still_served).tag.endswith("getPersonResponse")
    assert_soap_fault(expired, faults.OUTDATED_GLOBALCONF)
    assert "cannot download" in last_error
    assert soap_body(get_person_through_gw_a(fed)).tag.endswith("getPersonResponse")


@contextlib.contextmanager
def impostor_registry(address: str, signed: bytes) -> Iterator[None]:
    """Something else on the registry's address, answering GET /globalconf with `signed`."""

    async def globalconf(request: web.Request) -> web.Response:
        return web.Response(body=signed, content_type="application/json")

    app = web.Application()
    app.router.add_get("/globalconf", globalconf)
    host, port = address.removeprefix("http://").rsplit(":", 1)
    with serving_in_thread(app, host, int(port)):
        yield


def forgeries(fed: Federation, rogue_dir: Path) -> dict[str, bytes]:
    """The registry's current configuration with a higher version and another member name: once with
    the registry's signature left as it was, once signed properly by a key no anchor lists."""
    genuine = json.loads(requests.get(fed.description["globalconf"], timeout=HTTP_TIMEOUT_SECONDS).content)
    content = json.loads(base64.b64decode(genuine["content"]))
    content["version"] += 1000
    content["members"][0]["name"] = "Forged Agency"
    changed = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    tampered = {**genuine, "content": base64.b64encode(changed).decode("ascii")}
    rogue_ca = init_pki(rogue_dir, settings=CaSettings(common_name="rogue CA"))
    rogue = issue(rogue_dir, rogue_ca, ConfigurationSignerProfile(name="rogue signer"))
    foreign = sign_globalconf(
        globalconf_from_json(changed), load_private_key(rogue.key_path), rogue.certificate
    )
    return {
        "the signature does not match": json.dumps(tampered, sort_keys=True, separators=(",", ":")).encode(),
        "the signer is not an anchor": foreign,
    }


def refused_by(fed: Federation, names: list[str], why: str) -> bool:
    return all(why in (fed.health(name)["globalconf"]["last_error"] or "") for name in names)


def test_a_tampered_or_foreign_configuration_is_refused_and_the_last_good_kept(
    short_fed: Federation, tmp_path: Path
) -> None:
    fed = short_fed
    forged = forgeries(fed, tmp_path / "rogue")
    refusals: dict[str, list[str]] = {}
    federation.stop_process(fed.dir, "registry")
    try:
        versions = {name: fed.health(name)["globalconf"]["version"] for name in ("gw-a", "gw-b")}
        for why, signed in forged.items():
            with impostor_registry(fed.registry_url, signed):
                wait_until(
                    functools.partial(refused_by, fed, list(versions), why),
                    refresh_seconds(fed) + PROPAGATION_MARGIN_SECONDS,
                    f"the gateways to refuse a configuration where {why}",
                )
                refusals[why] = [fed.health(name)["globalconf"]["last_error"] for name in versions]
                if len(refusals) == 1:
                    # Traffic goes on on the last good copy while it is valid (seconds only in this
                    # federation: on a slow machine it may have expired by now, and then the
                    # gateway must refuse with OutdatedGlobalConf, never serve on a forgery).
                    valid = fed.health("gw-a")["globalconf"]["valid"]
                    served = get_person_through_gw_a(fed)
                    if valid and served.status_code == 200:
                        assert soap_body(served).tag.endswith("getPersonResponse")
                    else:
                        assert b"OutdatedGlobalConf" in served.content, served.text[:500]
        kept = {name: fed.health(name)["globalconf"]["version"] for name in versions}
    finally:
        federation.start_process(fed.dir, "registry")

    assert kept == versions
    assert set(refusals) == set(forged)
    names = {member["name"] for member in fed.registry.get("/members")["members"]}
    assert "Forged Agency" not in names
    wait_until(
        lambda: all(fed.health(n)["globalconf"]["last_error"] is None for n in versions),
        refresh_seconds(fed) + 10,
        "the gateways to take the registry's configuration again",
    )


# --- rotating the registry's signing key -----------------------------------------------------------


def anchors_of(fed: Federation, name: str) -> set[str]:
    return set(fed.health(name)["globalconf"]["anchor_certificates"])


def runs_on(fed: Federation, version: int) -> bool:
    return all(
        (fed.health(n)["globalconf"]["version"] or 0) >= version
        and fed.health(n)["globalconf"]["last_error"] is None
        for n in GATEWAYS
    )


def test_the_signing_key_rotates_while_gateways_keep_working(short_fed: Federation) -> None:
    """docs/central.md "Rotating the signing key", step by step, with traffic after each step."""
    fed = short_fed
    registry, registry_dir = fed.registry, Path(fed.description["registry"]["dir"])
    anchor_url, anchor_file = fed.description["registry"]["anchor_url"], Path(fed.description["anchor"])
    wait = functools.partial(wait_until, timeout=refresh_seconds(fed) + 10)
    (old,) = [key for key in registry.get("/signing-keys")["signing_keys"] if key["status"] == "active"]
    new_files = issue(
        registry_dir / "pki",
        load_ca(registry_dir / "pki"),
        ConfigurationSignerProfile(name="DEV configuration signer 2"),
        out_prefix=registry_dir / "keys" / "confsign-2",
    )

    # 1. A new key joins as standby; 2. the anchor listing both goes to every gateway.
    new = registry.post(
        "/signing-keys", {"key_path": str(new_files.key_path), "cert_path": str(new_files.certificate_path)}
    )
    assert new["status"] == "standby"
    both = {old["certificate"]["sha256"], new["certificate"]["sha256"]}
    federation.fetch_anchor(anchor_url, anchor_file)
    wait(lambda: all(anchors_of(fed, n) == both for n in GATEWAYS), what="the two-key anchor")
    assert soap_body(get_person_through_gw_a(fed)) is not None

    # 3. The registry signs with the new key; gateways follow without noticing.
    registry.post(f"/signing-keys/{new['id']}/activate")
    published = registry.get("/globalconf")
    assert published["signer_sha256"] == new["certificate"]["sha256"]
    wait(
        lambda: runs_on(fed, published["version"]),
        what="the gateways to adopt the newly signed configuration",
    )
    assert soap_body(get_person_through_gw_a(fed)) is not None

    # 4. The old key retires; the one-key anchor goes out; the next versions still verify.
    registry.post(f"/signing-keys/{old['id']}/retire")
    federation.fetch_anchor(anchor_url, anchor_file)
    wait(
        lambda: all(anchors_of(fed, n) == {new["certificate"]["sha256"]} for n in GATEWAYS),
        what="the one-key anchor",
    )
    later = registry.get("/globalconf")["version"] + 1  # re-signed within regenerate_seconds
    wait(lambda: runs_on(fed, later), what="the gateways to adopt a version verified by the new anchor alone")
    assert soap_body(get_person_through_gw_a(fed)) is not None
