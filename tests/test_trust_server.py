"""The trust services over real HTTP on 127.0.0.1: our clients, openssl as a client, the cache, the CLI."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
import yarl
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.ocsp import OCSPCertStatus

from gateway.crypto.certs import fingerprint_sha256
from gateway.crypto.keys import load_private_key
from gateway.crypto.ocsp import (
    OcspError,
    OcspProblem,
    build_ocsp_request,
    verify_ocsp_response,
)
from gateway.crypto.timestamp import (
    TimestampError,
    TimestampProblem,
    parse_timestamp_response,
    verify_timestamp_token,
)
from gateway.ids import ClientId
from gateway.outbound.network import AiohttpTransport
from gateway.outbound.ocsp import OcspCache, fetch_ocsp
from gateway.outbound.tsa import request_timestamp
from gateway.trust import pki
from gateway.trust.ocsp_responder import OcspResponder
from gateway.trust.server import MAX_BODY_BYTES, build_app, index_status_lookup
from gateway.trust.trust_cli import cli
from gateway.trust.tsa import TimestampAuthority

HOUR = 3600
DIGEST = hashlib.sha256(b"root of a batch").digest()


@dataclass(frozen=True)
class Federation:
    directory: Path
    ca: pki.CertificateAuthority
    ca_path: Path
    tsa: pki.IssuedFiles
    ocsp: pki.IssuedFiles
    member: pki.IssuedFiles


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    directory = tmp_path_factory.mktemp("pki")
    ca = pki.init_pki(directory)
    tsa = pki.issue(directory, ca, pki.TsaProfile())
    ocsp = pki.issue(directory, ca, pki.OcspResponderProfile())
    member = pki.issue(directory, ca, pki.MemberSigningProfile(ClientId("DEV", "GOV", "1001")))
    return Federation(directory, ca, pki.ca_certificate_path(directory), tsa, ocsp, member)


@dataclass(frozen=True)
class Served:
    base: str
    session: aiohttp.ClientSession
    transport: AiohttpTransport


@pytest.fixture
async def served(federation: Federation) -> AsyncIterator[Served]:
    app = build_app(
        TimestampAuthority(load_private_key(federation.tsa.key_path), federation.tsa.certificate),
        OcspResponder(
            load_private_key(federation.ocsp.key_path),
            federation.ocsp.certificate,
            federation.ca.certificate,
            index_status_lookup(federation.directory),
        ),
    )
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    assert host == "127.0.0.1"
    async with aiohttp.ClientSession() as session:
        yield Served(f"http://127.0.0.1:{port}", session, AiohttpTransport(session))
    await runner.cleanup()


def closed_port_url(path: str) -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30, check=False)


# --- time-stamps ----------------------------------------------------------------------------


async def test_our_client_gets_a_verifiable_timestamp(served: Served, federation: Federation) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    token = await request_timestamp(served.transport, served.base + "/tsa", DIGEST, timeout=5)
    gen_time = verify_timestamp_token(token, DIGEST, [], [federation.ca.certificate])
    assert before <= gen_time <= dt.datetime.now(dt.UTC)
    pinned_only = verify_timestamp_token(token, DIGEST, [federation.tsa.certificate], [])
    assert pinned_only == gen_time


async def test_openssl_query_answered_over_http(
    served: Served, federation: Federation, tmp_path: Path
) -> None:
    (tmp_path / "data").write_bytes(b"some log records")
    made = openssl(
        "ts", "-query", "-data", str(tmp_path / "data"), "-sha256", "-cert", "-out", str(tmp_path / "q.tsq")
    )
    assert made.returncode == 0, made.stderr
    async with served.session.post(
        served.base + "/tsa",
        data=(tmp_path / "q.tsq").read_bytes(),
        headers={"Content-Type": "application/timestamp-query"},
    ) as response:
        assert response.status == 200
        assert response.content_type == "application/timestamp-reply"
        (tmp_path / "r.tsr").write_bytes(await response.read())
    text = openssl("ts", "-reply", "-in", str(tmp_path / "r.tsr"), "-text").stdout
    assert "Status: Granted." in text
    verified = openssl(
        "ts", "-verify", "-queryfile", str(tmp_path / "q.tsq"), "-in", str(tmp_path / "r.tsr"),
        "-CAfile", str(federation.ca_path),
    )  # fmt: skip
    assert "Verification: OK" in verified.stdout, verified.stderr


async def test_timestamp_client_failures_are_typed(served: Served) -> None:
    for url in (closed_port_url("/tsa"), served.base + "/health", served.base + "/ocsp"):
        with pytest.raises(TimestampError) as caught:
            await request_timestamp(served.transport, url, DIGEST, timeout=5)
        assert caught.value.problem is TimestampProblem.UNAVAILABLE


async def test_tsa_refusal_reaches_the_client(served: Served) -> None:
    async with served.session.post(
        served.base + "/tsa", data=b"\x30\x00", headers={"Content-Type": "application/timestamp-query"}
    ) as response:
        assert response.status == 200  # RFC 3161 §3.4: the refusal is in the TimeStampResp
        body = await response.read()
    with pytest.raises(TimestampError) as caught:
        parse_timestamp_response(body)
    assert caught.value.problem is TimestampProblem.REJECTED


# --- OCSP -----------------------------------------------------------------------------------


async def test_openssl_as_ocsp_client(served: Served, federation: Federation) -> None:
    process = await asyncio.create_subprocess_exec(
        "openssl", "ocsp", "-issuer", str(federation.ca_path),
        "-cert", str(federation.member.certificate_path),
        "-url", served.base + "/ocsp", "-CAfile", str(federation.ca_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, stderr
    assert b"Response verify OK" in stderr
    assert f"{federation.member.certificate_path}: good".encode() in stdout
    assert b"WARNING" not in stdout + stderr  # openssl sends a nonce and warns if it is not echoed


async def test_revocation_shows_on_the_next_answer(served: Served, federation: Federation) -> None:
    issued = pki.issue(
        federation.directory, federation.ca, pki.MemberSigningProfile(ClientId("DEV", "GOV", "rv"))
    )
    url = served.base + "/ocsp"
    ca = federation.ca.certificate
    now = dt.datetime.now(dt.UTC)
    good = await fetch_ocsp(served.transport, url, issued.certificate, ca, timeout=5)
    assert verify_ocsp_response(good, issued.certificate, ca, now, HOUR).status is OCSPCertStatus.GOOD
    pki.revoke(federation.directory, issued.certificate.serial_number, x509.ReasonFlags.superseded)
    revoked = await fetch_ocsp(served.transport, url, issued.certificate, ca, timeout=5)
    status = verify_ocsp_response(revoked, issued.certificate, ca, dt.datetime.now(dt.UTC), HOUR)
    assert (status.status, status.reason) == (OCSPCertStatus.REVOKED, x509.ReasonFlags.superseded)


async def test_ocsp_over_get(served: Served, federation: Federation) -> None:
    """RFC 6960 A.1: the request base64-encoded then URL-encoded in the path."""
    ca = federation.ca.certificate
    for _ in range(64):  # find a request whose base64 has a '/' and a '+', the awkward cases
        request = build_ocsp_request(federation.member.certificate, ca, nonce=os.urandom(16))
        encoded = base64.b64encode(request).decode()
        if "/" in encoded and "+" in encoded:
            break
    else:
        pytest.fail("no request with both '/' and '+' in its base64")
    for path in (quote(encoded, safe=""), encoded):
        async with served.session.get(yarl.URL(f"{served.base}/ocsp/{path}", encoded=True)) as response:
            assert response.status == 200
            assert response.content_type == "application/ocsp-response"
            body = await response.read()
        status = verify_ocsp_response(body, federation.member.certificate, ca, dt.datetime.now(dt.UTC), HOUR)
        assert status.is_good
    async with served.session.get(served.base + "/ocsp/not*base64") as response:
        assert response.status == 400


async def test_http_limits_and_health(served: Served, federation: Federation) -> None:
    async with served.session.post(
        served.base + "/tsa", data=b"x", headers={"Content-Type": "text/plain"}
    ) as r:
        assert r.status == 415
    async with served.session.post(served.base + "/ocsp", data=b"x") as r:
        assert r.status == 415
    too_big = b"\x30" * (MAX_BODY_BYTES + 1)
    async with served.session.post(
        served.base + "/ocsp", data=too_big, headers={"Content-Type": "application/ocsp-request"}
    ) as r:
        assert r.status == 413
    async with served.session.get(served.base + "/health") as r:
        assert r.status == 200
        health = await r.json()
    assert health["status"] == "ok"
    assert health["ocsp"]["ca_fingerprint_sha256"] == fingerprint_sha256(federation.ca.certificate)


# --- the OCSP cache -------------------------------------------------------------------------


async def test_ocsp_cache_keeps_fresh_verified_responses(served: Served, federation: Federation) -> None:
    issued = pki.issue(
        federation.directory, federation.ca, pki.MemberSigningProfile(ClientId("DEV", "GOV", "c"))
    )
    certificate, ca = issued.certificate, federation.ca.certificate
    cache = OcspCache(served.transport, max_age_seconds=HOUR, timeout_seconds=5)
    assert cache.get(certificate) is None
    cache.watch(certificate, ca, served.base + "/ocsp")
    assert await cache.refresh() == []
    first = cache.get(certificate)
    assert first is not None
    assert verify_ocsp_response(first, certificate, ca, dt.datetime.now(dt.UTC), HOUR).is_good

    assert await cache.refresh() == []  # not due: nothing fetched, the same bytes kept
    assert cache.get(certificate) == first
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=31)  # past half of the response's life
    assert await cache.refresh(later) == []
    assert cache.get(certificate) != first

    # The responder goes away: the response in hand stays until it stops counting.
    kept = cache.get(certificate)
    cache.watch(certificate, ca, closed_port_url("/ocsp"))
    failures = await cache.refresh(force=True)
    assert [(f.serial, f.error.problem) for f in failures] == [
        (certificate.serial_number, OcspProblem.UNAVAILABLE)
    ]
    assert cache.get(certificate) == kept
    assert cache.get(certificate, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=61)) is None

    # A revocation replaces the good answer: peers must see it.
    cache.watch(certificate, ca, served.base + "/ocsp")
    pki.revoke(federation.directory, certificate.serial_number)
    assert await cache.refresh(force=True) == []
    status = cache.status(certificate)
    assert status is not None and status.status is OCSPCertStatus.REVOKED


async def test_ocsp_cache_refuses_responses_that_do_not_verify(
    served: Served, federation: Federation
) -> None:
    """A responder signing for another CA's certificate: the cache records the failure, keeps nothing."""
    stranger_dir = federation.directory.parent / "stranger"
    stranger_ca = pki.init_pki(stranger_dir)
    stranger = pki.issue(stranger_dir, stranger_ca, pki.MemberSigningProfile(ClientId("DEV", "GOV", "s")))
    cache = OcspCache(served.transport, max_age_seconds=HOUR, timeout_seconds=5)
    cache.watch(stranger.certificate, stranger_ca.certificate, served.base + "/ocsp")
    failures = await cache.refresh()
    assert [f.error.problem for f in failures] == [OcspProblem.UNSUCCESSFUL]  # unauthorized for that CA
    assert cache.get(stranger.certificate) is None


async def test_ocsp_cache_fails_over_to_the_next_responder_and_remembers_the_failed_one(
    served: Served, federation: Federation
) -> None:
    """Responders in priority order: a dead first one is asked, then skipped until it has rested."""
    issued = pki.issue(
        federation.directory, federation.ca, pki.MemberSigningProfile(ClientId("DEV", "GOV", "f"))
    )
    certificate, ca = issued.certificate, federation.ca.certificate
    dead, alive = closed_port_url("/ocsp"), served.base + "/ocsp"
    cache = OcspCache(served.transport, max_age_seconds=HOUR, timeout_seconds=5)
    cache.watch(certificate, ca, [dead, alive])

    assert await cache.refresh() == []
    assert cache.get(certificate) is not None
    assert list(cache.responder_failures(certificate)) == [dead]
    assert "cannot connect" in cache.responder_failures(certificate)[dead]
    assert cache.failover.order([dead, alive]) == [alive, dead]  # resting: asked last

    # Every responder down: the failure names each, the response in hand stays.
    cache.watch(certificate, ca, [dead, closed_port_url("/ocsp")])
    (failure,) = await cache.refresh(force=True)
    assert failure.error.problem is OcspProblem.UNAVAILABLE
    assert len(failure.responders) == 2 and dead in failure.responders
    assert cache.get(certificate) is not None


async def test_ocsp_responses_are_kept_on_disk_owner_only_and_verified_when_read_back(
    served: Served, federation: Federation, tmp_path: Path
) -> None:
    issued = pki.issue(
        federation.directory, federation.ca, pki.MemberSigningProfile(ClientId("DEV", "GOV", "d"))
    )
    certificate, ca = issued.certificate, federation.ca.certificate
    store = tmp_path / "ocsp"
    cache = OcspCache(served.transport, max_age_seconds=HOUR, store_dir=store)
    cache.watch(certificate, ca, served.base + "/ocsp")
    assert await cache.refresh() == []
    (path,) = store.iterdir()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes() == cache.get(certificate)

    def restarted(max_age: float = HOUR) -> OcspCache:
        """A new node process: nothing reachable, only what is on disk."""
        again = OcspCache(served.transport, max_age_seconds=max_age, store_dir=store)
        again.watch(certificate, ca, closed_port_url("/ocsp"))
        return again

    assert restarted().get(certificate) == path.read_bytes()
    assert restarted(max_age=0.001).get(certificate) is None  # too old for the limit: ignored

    path.chmod(0o644)  # others may read or replace it: not trusted
    assert restarted().get(certificate) is None
    path.chmod(0o600)
    other = pki.issue(
        federation.directory, federation.ca, pki.MemberSigningProfile(ClientId("DEV", "GOV", "o"))
    )
    foreign = await fetch_ocsp(served.transport, served.base + "/ocsp", other.certificate, ca, 5)
    path.write_bytes(foreign)  # a response about another certificate does not verify
    assert restarted().get(certificate) is None


async def test_a_worker_that_does_not_fetch_takes_up_what_the_fetching_worker_stored(
    served: Served, federation: Federation, tmp_path: Path
) -> None:
    """gateway.workers: worker 0 fetches and stores; another worker reads each newer file."""
    issued = pki.issue(
        federation.directory, federation.ca, pki.MemberSigningProfile(ClientId("DEV", "GOV", "w"))
    )
    certificate, ca = issued.certificate, federation.ca.certificate
    store = tmp_path / "ocsp"
    fetching = OcspCache(served.transport, max_age_seconds=HOUR, store_dir=store)
    fetching.watch(certificate, ca, served.base + "/ocsp")
    following = OcspCache(served.transport, max_age_seconds=HOUR, store_dir=store)
    following.watch(certificate, ca, closed_port_url("/ocsp"))  # it never asks a responder
    assert following.get(certificate) is None

    assert await fetching.refresh() == []
    following.reload_stored()
    first = following.get(certificate)
    assert first is not None and first == fetching.get(certificate)

    await asyncio.sleep(1.1)  # thisUpdate has a resolution of a second
    assert await fetching.refresh(force=True) == []
    following.reload_stored()
    assert following.get(certificate) == fetching.get(certificate) != first

    (path,) = store.iterdir()
    path.write_bytes(first)  # an older response put back: the newer one in hand stays
    following.reload_stored()
    assert following.get(certificate) == fetching.get(certificate)


async def test_fetch_failures_are_typed(served: Served, federation: Federation) -> None:
    for url in (closed_port_url("/ocsp"), served.base + "/health", served.base + "/tsa"):
        with pytest.raises(OcspError) as caught:
            await fetch_ocsp(
                served.transport, url, federation.member.certificate, federation.ca.certificate, 5
            )
        assert caught.value.problem is OcspProblem.UNAVAILABLE


# --- the CLI --------------------------------------------------------------------------------


def test_cli_refuses_a_non_loopback_address(federation: Federation) -> None:
    result = CliRunner().invoke(cli, ["serve", "--pki", str(federation.directory), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "not a loopback address" in result.output
    result = CliRunner().invoke(
        cli, ["serve", "--pki", str(federation.directory), "--tsa-key", str(federation.tsa.key_path)]
    )
    assert result.exit_code == 2
    assert "both --tsa-key and --tsa-cert" in result.output


async def test_cli_serves_and_issues_what_is_missing(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    ca = pki.init_pki(directory)
    tsa = pki.issue(directory, ca, pki.TsaProfile())  # already there: reused, not reissued
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from gateway.trust.trust_cli import cli; cli()",
        "serve", "--pki", str(directory), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("trust services on"):
            line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
            assert line, (await process.stderr.read()).decode() if process.stderr else ""
            lines.append(line.decode().strip())
        base = lines[-1].split()[3].rstrip(":")
        assert base.startswith("http://127.0.0.1:")
        assert [line.split()[1] for line in lines[:-1]] == ["ocsp"]  # only the OCSP certificate was issued
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/health") as response:
                health = await response.json()
            token = await request_timestamp(AiohttpTransport(session), base + "/tsa", DIGEST, timeout=5)
        assert health["tsa"]["fingerprint_sha256"] == fingerprint_sha256(tsa.certificate)
        verify_timestamp_token(token, DIGEST, [], [ca.certificate])
        kinds = sorted(entry.kind for entry in pki.read_index(directory).values())
        assert kinds == ["ocsp", "tsa"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
