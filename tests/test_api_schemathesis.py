"""Schemathesis against both live management APIs: the documents say what the servers do.

Each API runs on 127.0.0.1 (real sockets, the fixtures of test_admin_api and
test_central_registry) and `schemathesis run` fuzzes it from its own OpenAPI document, with a
fixed seed and few examples per operation, checking that:

* no request makes a server error (5xx);
* every request the document calls valid is accepted (2xx, or 404/409 where the thing named
  does not exist or clashes): never 400 for conforming input;
* every request the document calls invalid is refused (4xx).

A few operations take content JSON Schema cannot describe (a PEM certificate that must parse,
a key file that must exist on the registry's host, a WSDL that must be a WSDL) or rules across
parameters OpenAPI 3.0 cannot state (`since` before `until`): schemathesis cannot make valid
requests for them, so for them only the first and last checks run (`CONTENT_CHECKED`).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Final

from gateway.admin.roles import Role
from tests.logsamples import SampleLog
from tests.test_central_registry import (  # noqa: F401  (fixtures)
    Registry,
    database_url,
    migrated_url,
    registry,
    sqlite_only,
    trust,
)
from tests.test_messagelog_officer import sample, serving  # noqa: F401  (fixture)

SCHEMATHESIS: Final = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES: Final = 4
"""Per operation and phase: enough to try each constraint's edges, few enough for ~60 s a run."""
SEED: Final = 8
TIME_LIMIT_SECONDS: Final = 240
"""A run takes ~30-60 s on a loaded 2-core machine; past this something hangs."""

CONTENT_CHECKED: Final = {
    "gateway": (
        "subsystem.pin_certificate",  # a PEM certificate that parses
        "certificate.import",  # ... issued for one of our keys
        "service.set_backend",  # tls_ca_pem: PEM certificates that parse
        "key.csr",  # the key file must exist
        # Rules across parameters, which OpenAPI 3.0 cannot state (the descriptions do): since
        # before until; for an export, id alone or at least one filter.
        "message_log.search",
        "message_log.export",
        # A cache policy is valid only for a provider the global configuration knows (state), and
        # its rules across fields (ttl_seconds within max_age_seconds, a replicate policy with a
        # plan, the plan's client registered here) are beyond OpenAPI 3.0; likewise a purge names
        # at least one filter or everything, not both.
        "cache_policy.set",
        "cache_policy.apply",
        "cache.purge",
    ),
    "registry": (
        "server.add",  # PEM certificates that parse, for the server's owner
        "server.add_auth_cert",
        "trusted_ca.add",
        "trusted_ca.set_ocsp",
        "tsa.add",
        "tsa.update",
        "signing_key.add",  # key and certificate files on the registry's host
    ),
}
NOT_FUZZED: Final = {
    # Registering from a document fetched by URL would send the fuzzer's URLs out to the network
    # (a declarative file's descriptions too: config.apply, tested in test_declarative.py);
    # revoking keys by number would revoke the fuzzer's own key; the health check answers 503
    # by design once the fuzzer's settings let the configuration expire.
    "gateway": ("service.add_wsdl", "service.add_openapi", "config.apply", "api_key.revoke", "health"),
    "registry": ("api_key.revoke", "health"),
}


def _config(api: str) -> str:
    """schemathesis.toml: the operations' exceptions above."""
    content = "|".join(CONTENT_CHECKED[api]).replace(".", r"\\.")
    not_fuzzed = "|".join(NOT_FUZZED[api]).replace(".", r"\\.")
    return (
        "[checks]\n"
        "enabled = false\n"
        "not_a_server_error.enabled = true\n"
        "positive_data_acceptance.enabled = true\n"
        "negative_data_rejection.enabled = true\n"
        "response_schema_conformance.enabled = true\n"
        "\n[[operations]]\n"
        f'include-operation-id-regex = "^({content})$"\n'
        "checks.positive_data_acceptance.enabled = false\n"
        "\n[[operations]]\n"
        f'include-operation-id-regex = "^({not_fuzzed})$"\n'
        "enabled = false\n"
    )


async def schemathesis(base_url: str, key: str, api: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(api))
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{base_url}/api/openapi.json",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--no-shrink",
        # The identifier patterns (a code is never "." or "..") are look-aheads Hypothesis meets
        # by generating and filtering; that is slower, not wrong.
        "--suppress-health-check",
        "filter_too_much",
        "--header",
        f"X-API-Key: {key}",
        "--report-dir",
        str(tmp_path / "report"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TIME_LIMIT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-20000:]


async def test_gateway_api_keeps_to_its_document(sample: SampleLog, tmp_path: Path) -> None:  # noqa: F811
    """A node with a message log (the officer tests' sample), so its reads have records to find."""
    async with serving(tmp_path / "node", sample) as node:
        await schemathesis(node.base, node.keys[Role.SYSTEM_ADMINISTRATOR], "gateway", tmp_path)


@sqlite_only
async def test_registry_api_keeps_to_its_document(registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    from gateway.central.roles import Role as RegistryRole

    key = registry.keys[RegistryRole.REGISTRY_ADMINISTRATOR][1]
    await schemathesis(registry.running.management_url, key, "registry", tmp_path)
