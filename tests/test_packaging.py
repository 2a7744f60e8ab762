"""What a packager and a new user get: the sdist and the wheel, built and used outside the checkout.

The wheel is installed with its dependencies into a fresh virtual environment in a temporary
directory (pip's cache makes that quick after bootstrap) and runs a development federation from
there, with a SOAP call through zeep and a REST call through requests: the schemas, the example
service descriptions and the example services must all come from the installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import zeep
from setuptools import find_packages
from zeep.transports import Transport

from tests.conftest import KNOWN_PERSON, REPO, zeep_headers

BUILD_TIMEOUT_SECONDS = 300
pytestmark = pytest.mark.slow


def _run(command: list[str], cwd: Path, timeout: float = BUILD_TIMEOUT_SECONDS) -> str:
    """Run a command, failing the test with its output when it fails."""
    env = {key: value for key, value in os.environ.items() if key not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built as a packager builds them (`python -m build`)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], cwd=out)
    return out


def test_the_package_list_names_every_package() -> None:
    """pyproject lists the packages by hand (to map services/ and wsdl/ into the package):
    a package added under gateway/ and not listed would be missing from the wheel."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set(find_packages(str(REPO), include=["gateway*"]))
    assert listed == found | {"gateway.examples", "gateway.descriptions"}


def test_the_sdist_holds_what_a_packager_needs_and_its_tests_pass(dist: Path, tmp_path: Path) -> None:
    (sdist,) = dist.glob("xgate-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        archive.extractall(tmp_path, filter="data")
    for needed in (
        "LICENSE",
        "README.md",
        "docs/cache.md",
        "config/gateway.example.toml",
        "tests/conftest.py",
        "tests/logsamples.py",
        "tests/samples/valid.wsdl",
        "wsdl/xroad/xroad.xsd",
        "services/population_register.py",
        "scripts/bootstrap.sh",
    ):
        assert needed in names, f"the sdist lacks {needed}"
    assert not any("__pycache__" in name or name.endswith(".sqlite") for name in names)
    (root,) = tmp_path.glob("xgate-*")
    collected = _run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=root
    )
    assert "error" not in collected.lower().splitlines()[-1], collected[-2000:]
    # A few quick modules run from the sdist's own sources (its directory comes first on sys.path).
    _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_ids.py",
            "tests/test_descriptions.py",
        ],
        cwd=root,
    )


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment, outside the checkout, with the wheel and its dependencies."""
    venv = tmp_path_factory.mktemp("venv")
    (wheel,) = dist.glob("xgate-*.whl")
    _run([sys.executable, "-m", "venv", str(venv)], cwd=venv)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=venv)
    return venv


def test_the_wheel_ships_the_schemas_and_example_services(installed: Path) -> None:
    probe = (
        "import gateway, gateway.examples.population_register as example;"
        "from gateway.resources import xroad_schema_dir, descriptions_dir;"
        "print(gateway.__file__); print(example.__file__);"
        "print((xroad_schema_dir() / 'xroad.xsd').is_file(),"
        " (descriptions_dir() / 'benefits-api.yaml').is_file())"
    )
    lines = _run([str(installed / "bin" / "python"), "-c", probe], cwd=installed).split()
    assert all(line.startswith(str(installed)) for line in lines[:2]), lines
    assert lines[2:] == ["True", "True"]


def _soap_get_person(gateway_url: str, wsdl: Path) -> str:
    client = zeep.Client(str(wsdl), transport=Transport(timeout=30))
    service = client.create_service(next(iter(client.wsdl.bindings)), gateway_url)
    headers = zeep_headers(id=str(uuid.uuid4()), protocolVersion="4.0")
    answer = service.getPerson(personalCode=KNOWN_PERSON, _soapheaders=headers)
    return str(answer["body"]["person"]["personalCode"])


@pytest.fixture
def federation_from_the_wheel(installed: Path, tmp_path: Path) -> Iterator[dict[str, object]]:
    xgate = str(installed / "bin" / "xgate")
    fed = tmp_path / "federation"
    _run([xgate, "federation", "up", "--dir", str(fed)], cwd=tmp_path, timeout=120)
    try:
        yield json.loads((fed / "federation.json").read_text())
    finally:
        _run([xgate, "federation", "down", "--dir", str(fed)], cwd=tmp_path, timeout=60)


def test_an_installed_wheel_runs_a_federation_anywhere(
    federation_from_the_wheel: dict[str, object], installed: Path
) -> None:
    gateways = federation_from_the_wheel["gateways"]
    assert isinstance(gateways, list)
    gateway_a = next(gw for gw in gateways if gw["name"] == "gw-a")
    url = gateway_a["internal_http_url"]
    (wsdl,) = (installed / "lib").glob("python3*/site-packages/gateway/descriptions/population-register.wsdl")
    assert _soap_get_person(url, wsdl) == KNOWN_PERSON
    answer = requests.get(
        f"{url}/r1/DEV/GOV/1003/benefits/benefits/benefits/{KNOWN_PERSON}",
        headers={"X-Road-Client": "DEV/GOV/1001/benefits-office"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Road-Id"]
