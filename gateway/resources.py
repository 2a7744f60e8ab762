"""Files that ship with xgate: the X-Road schemas and the example service descriptions.

They live in the checkout's `wsdl/` and inside an installed wheel as `gateway.descriptions`
(pyproject's package-dir); importlib.resources finds them in both, so nothing reads a path
relative to the source tree and `pip install xgate` works outside a checkout.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

DESCRIPTIONS_PACKAGE: Final = "gateway.descriptions"
EXAMPLES_PACKAGE: Final = "gateway.examples"
"""The example agency services (the checkout's `services/`), run as `python -m` modules."""


def descriptions_dir() -> Path:
    """The directory of the example WSDL and OpenAPI documents; `xroad/` holds the schemas.

    A wheel is installed unpacked, so this is a real directory: lxml and xmlschema resolve the
    schemas' imports relative to it.
    """
    return Path(str(files(DESCRIPTIONS_PACKAGE)))


def xroad_schema_dir() -> Path:
    """X-Road's official XSDs, as published with the message protocol 4.0."""
    return descriptions_dir() / "xroad"


def example_service_module(name: str) -> str:
    """The module that runs one example service, e.g. `population_register`."""
    return f"{EXAMPLES_PACKAGE}.{name}"
